fn main() -> std::process::ExitCode {
    lpmx_unpack::cli::main()
}
