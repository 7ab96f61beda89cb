//! The `silt` binary: parses arguments, sets up logging, runs the verb, maps errors to exit codes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = silt::cli::Cli::parse();
    silt::cli::init_logging(cli.verbose);
    match cli.command.run(&mut std::io::stdout().lock()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("silt: error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
