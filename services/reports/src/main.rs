fn main() -> std::process::ExitCode {
    xinyong_platform::service::main("reports", xinyong_reports::run)
}
