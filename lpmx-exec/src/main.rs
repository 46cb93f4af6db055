fn main() -> std::process::ExitCode {
    lpmx_exec::cli::main()
}
