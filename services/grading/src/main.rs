fn main() -> std::process::ExitCode {
    xinyong_platform::service::main("grading", xinyong_grading::run)
}
