//! The `custos` binary: the allocator, then the command line in `custos::cli`.
#![forbid(unsafe_code)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    custos::cli::main()
}
