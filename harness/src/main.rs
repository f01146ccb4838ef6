//! `harness`: parse the command line and hand over to a command.

use clap::Parser;
use harness::cli::{Cli, Command};
use harness::commands;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The fuse model's daemon is this binary run again with its own first word; it is
    // not a user command, so it bypasses the command line parser.
    let args: Vec<_> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == models::fuse::server::SUBCOMMAND)
    {
        return models::fuse::server::main(&args[2..]);
    }
    if let Ok(exe) = std::env::current_exe() {
        models::fuse::daemon::set_daemon_program(exe);
    }
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => commands::run::run(&args),
        Command::Sweep(args) => commands::sweep::sweep(&args),
        Command::List => commands::list::list(),
        Command::Doctor(args) => commands::doctor::doctor(&args),
        Command::HookCosts(args) => commands::hook_costs::hook_costs(&args),
        Command::Compare {
            base,
            new,
            threshold,
            metrics,
            report_only,
            allow_config_change,
        } => commands::compare::compare_files(
            &base,
            &new,
            &threshold,
            metrics.as_deref(),
            report_only,
            allow_config_change,
        ),
        Command::Report {
            results,
            out,
            baseline,
            compare,
        } => commands::report::report(&results, baseline.as_deref(), compare.as_deref(), &out),
        Command::Plot {
            results,
            out,
            baseline,
        } => commands::plot::plot(&results, baseline.as_deref(), &out),
        Command::RecoverUpgrade(args) => commands::recover::recover_upgrade(&args),
        Command::Pack {
            format,
            src_dir,
            out,
        } => commands::archive::pack(&format, &src_dir, &out),
        Command::Unpack {
            format,
            keep_setid,
            input,
            dest,
        } => commands::archive::unpack(&format, &input, &dest, keep_setid),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
