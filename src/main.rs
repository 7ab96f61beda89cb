//! The `silt` binary: parses arguments, sets up logging, runs the verb, maps errors to exit codes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = silt::cli::Cli::parse();
    silt::cli::init_logging(cli.verbose);
    // In a multi-process job every log line carries its rank (launchers interleave the ranks' output).
    let rank = silt::dist::Launch::from_env().ok().filter(|l| l.is_distributed()).map(|l| l.rank);
    let _rank_span = rank.map(|r| tracing::info_span!("rank", r).entered());
    match cli.command.run(&mut std::io::stdout().lock()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("silt: error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
