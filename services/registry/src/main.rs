fn main() -> std::process::ExitCode {
    xinyong_platform::service::main("registry", xinyong_registry::run)
}
