fn main() -> std::process::ExitCode {
    lpmx_pack::cli::main()
}
