fn main() -> std::process::ExitCode {
    xinyong_platform::service::main("lottery", xinyong_lottery::run)
}
