fn main() -> std::process::ExitCode {
    lpmx_mkroot::cli::main()
}
