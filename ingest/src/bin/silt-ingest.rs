//! `silt-ingest`: the `silt ingest` command without the rest of silt (no libtorch), for
//! ingest-only machines and for the crate's process-level tests.

use clap::Parser;

#[derive(Parser)]
#[command(name = "silt-ingest", version, about = "Ingest image sources into silt shards (same as `silt ingest`)")]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    args: silt_ingest::cli::IngestArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default = ["info", "debug", "trace"][cli.verbose.min(2) as usize];
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
    match cli.args.run(&mut std::io::stdout().lock()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("silt-ingest: error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
