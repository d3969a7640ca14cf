fn main() -> std::process::ExitCode {
    xinyong_platform::service::main("ingestion", xinyong_ingestion::run)
}
