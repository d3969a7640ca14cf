fn main() -> std::process::ExitCode {
    xinyong_platform::service::main("gateway", xinyong_gateway::run)
}
