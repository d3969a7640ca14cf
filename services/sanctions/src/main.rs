fn main() -> std::process::ExitCode {
    xinyong_platform::service::main("sanctions", xinyong_sanctions::run)
}
