fn main() -> std::process::ExitCode {
    xinyong_platform::service::main("objections", xinyong_objections::run)
}
