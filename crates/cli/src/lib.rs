//! The `cytoseg` command-line tool: each subcommand parses its arguments, calls the core, and
//! reports; no engine logic lives here.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod classify;
mod evaluate;
mod masks;
mod measure;
mod progress;
mod qc;
mod screen;
mod segment;
mod stitch;
mod train;
mod validate;

use clap::{Parser, Subcommand};

/// cytoseg: AI segmentation of microscopy images, Cellpose-exact and fast.
#[derive(Debug, Parser)]
#[command(
    name = "cytoseg",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Each command's options, outputs and exit status: cytoseg <COMMAND> --help\n\
Examples:\n  \
cytoseg segment images/ --out results            # labels, objects.csv, summary.csv, run.json\n  \
cytoseg validate --images ref/ --truth ref_labels/ --min-ap 0.8\n  \
cytoseg evaluate --truth truth/ --pred results/\n  \
cytoseg measure --labels x_labels.tif --image x.tif --out x.csv\n  \
cytoseg train --from nuclei --images mine/ --labels mine_labels/ --out models/mine"
)]
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
    /// Segment images, folders or globs in batch: labels, per-object measurements, a summary
    /// and a run manifest; resumes interrupted runs.
    Segment(Box<segment::SegmentCmd>),
    /// Score predicted label images against ground truth (AP, precision, recall, F1, panoptic
    /// quality at IoU thresholds, as stardist.matching and cellpose.metrics compute them).
    Evaluate(evaluate::EvaluateCmd),
    /// Segment reference images, score them against ground truth, and exit non-zero when the
    /// AP is below a bar (gate a batch run on it).
    Validate(validate::ValidateCmd),
    /// Measure every object of a label image (area, centroid, shape, per-channel intensity) as
    /// a CSV table equal to skimage.measure.regionprops_table, calibrated when a pixel size is
    /// known.
    Measure(measure::MeasureCmd),
    /// Clone a model and fine-tune it on your own annotated images (native, no Python): a new
    /// model package with its lineage, model card and loss curve.
    Train(train::TrainCmd),
    /// Quality-control report of a segmentation run: images that should not be trusted (out of
    /// focus, saturated, dim, empty, an unsure network), drift between instruments, days or
    /// plates, and treatments confounded with them; HTML and CSV.
    Qc(qc::QcCmd),
    /// Classify objects by morphology, intensity and texture: train a forest on labelled
    /// objects of a segment output, then apply it to every object of an output folder.
    #[command(subcommand)]
    Classify(classify::ClassifyCmd),
    /// Link the per-plane 2-D labels of a z-stack into 3-D labels, exactly as Cellpose's
    /// stitching mode (IoU between consecutive planes, then 3-D hole filling and size filter).
    Stitch(stitch::StitchArgs),
    /// Merge the runs of a screen fanned out over plates, wells or field lists (`segment
    /// --layout ... --well/--plate/--fields`) into one wells table, heatmaps and dose-response
    /// fits.
    Merge(screen::MergeCmd),
    /// List the bundled models (and, with --providers, ONNX Runtime's execution providers).
    Models(segment::ModelsCmd),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    run_from(std::env::args_os())
}

/// Runs the command line given as `args` (the first is the program name) in this process and
/// returns the exit code; never exits the process, so hosts such as the Fiji plugin (through
/// JNI) can run `cytoseg segment` in-process. The first run installs the logger.
pub fn run_from<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
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
        .try_init()
        .ok();
    let result = match cli.command {
        Command::Masks(args) => masks::run(args),
        Command::Segment(args) => segment::run(*args, cli.quiet),
        Command::Models(args) => segment::models(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Measure(args) => measure::run(args),
        Command::Validate(args) => validate::run(args, cli.quiet),
        Command::Train(args) => train::run(args, cli.quiet),
        Command::Qc(args) => qc::run(args, cli.quiet),
        Command::Classify(args) => classify::run(args, cli.quiet),
        Command::Merge(args) => screen::merge(args, cli.quiet),
        Command::Stitch(args) => stitch::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
