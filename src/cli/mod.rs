//! The `cytoseg` command-line tool: each subcommand parses its arguments, calls the core, and
//! reports; no engine logic lives here.

mod evaluate;
mod masks;
mod segment;

use clap::{Parser, Subcommand};

/// cytoseg: AI segmentation of microscopy images, Cellpose-exact and fast.
#[derive(Debug, Parser)]
#[command(name = "cytoseg", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Print more detail (repeat for debug output).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only print errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert a network's flows and cell probabilities (Cellpose layout, .npy) into instance
    /// labels exactly as Cellpose 4 does.
    Masks(masks::MasksArgs),
    /// Segment images with a model: writes <stem>_labels.tif per image.
    Segment(segment::SegmentCmd),
    /// Score predicted label images against ground truth (AP, precision, recall, F1, panoptic
    /// quality at IoU thresholds, as stardist.matching and cellpose.metrics compute them).
    Evaluate(evaluate::EvaluateCmd),
    /// List the bundled models (and, with --providers, ONNX Runtime's execution providers).
    Models(segment::ModelsCmd),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let level = if cli.quiet {
        log::LevelFilter::Error
    } else {
        match cli.verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            _ => log::LevelFilter::Debug,
        }
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_target(false)
        .init();
    let result = match cli.command {
        Command::Masks(args) => masks::run(args),
        Command::Segment(args) => segment::run(args),
        Command::Models(args) => segment::models(args),
        Command::Evaluate(args) => evaluate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
