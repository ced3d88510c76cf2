//! `registry-v1`: the binary. Everything lives in the library; this only
//! hands the command line to it and turns a failure into an exit code.

fn main() -> std::process::ExitCode {
    registry_v1::cli::main()
}
