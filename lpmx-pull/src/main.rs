fn main() -> std::process::ExitCode {
    lpmx_pull::cli::main()
}
