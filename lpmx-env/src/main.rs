fn main() -> std::process::ExitCode {
    lpmx_env::cli::main()
}
