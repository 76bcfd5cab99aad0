//! `cytoseg qc`: the quality-control report of a segmentation run (flagged images, drift
//! between acquisition groups, treatments confounded with groups) as HTML and CSV.

use std::path::PathBuf;

use clap::Args;

use cytoseg_core::error::Result;
use cytoseg_core::qc::report::{QcOptions, QcReport, qc_report};

/// Where images' groups come from (shared by `cytoseg qc`, `segment --qc` and `validate`).
#[derive(Debug, Args, Clone, Default)]
pub struct GroupArgs {
    /// Pattern with named fields matched against the end of each input path, e.g.
    /// '{instrument}/{date}/*.tif' or '{plate}_{well}_s{site}_w{channel}.tif' ({name}: one or
    /// more characters within a folder or file name; *: any within one; **: any folders).
    #[arg(long, value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// CSV giving each image's fields: a file column (path or its end), then one column per
    /// field (instrument, date, operator, well...).
    #[arg(long, value_name = "CSV")]
    pub sidecar: Option<PathBuf>,
    /// Fields whose values form the groups compared, comma-separated (default: every field
    /// except well, row, column, site, field and channel).
    #[arg(long, value_delimiter = ',', value_name = "FIELD")]
    pub group_by: Vec<String>,
}

impl GroupArgs {
    /// Whether any grouping was asked for.
    pub fn any(&self) -> bool {
        self.pattern.is_some() || self.sidecar.is_some() || !self.group_by.is_empty()
    }
}

/// How the QC report groups and judges images (shared by `cytoseg qc` and `segment --qc`).
#[derive(Debug, Args, Clone)]
pub struct QcArgs {
    /// Where the groups come from.
    #[command(flatten)]
    pub groups: GroupArgs,
    /// Plate map CSV with columns well, treatment and optionally control (1/true/yes): checks
    /// whether treatments and acquisition groups are aligned (needs a well field).
    #[arg(long, value_name = "CSV")]
    pub plate_map: Option<PathBuf>,
    /// Further measures to plot and compare between groups, comma-separated: summary.csv
    /// columns, or object-table columns (the per-image median over the objects, e.g.
    /// intensity_mean, eccentricity).
    #[arg(long, value_delimiter = ',', value_name = "COLUMN")]
    pub measure: Vec<String>,
    /// Robust z-score beyond which a judged measure flags an image.
    #[arg(long, default_value_t = 3.0, value_name = "Z")]
    pub z: f64,
    /// Effect size (Hedges' g) whose whole 95% interval must lie beyond ± this to report drift.
    #[arg(long, default_value_t = 0.5, value_name = "G")]
    pub drift: f64,
}

impl QcArgs {
    /// The engine's options from these arguments.
    pub fn options(&self) -> QcOptions {
        QcOptions {
            pattern: self.groups.pattern.clone(),
            sidecar: self.groups.sidecar.clone(),
            group_by: self.groups.group_by.clone(),
            plate_map: self.plate_map.clone(),
            measures: self.measure.clone(),
            z: self.z,
            drift: self.drift,
            ..QcOptions::default()
        }
    }
}

/// Arguments of `cytoseg qc`.
#[derive(Debug, Args)]
#[command(after_long_help = QC_AFTER_HELP)]
pub struct QcCmd {
    /// Output folder of `cytoseg segment` (holding summary.csv and run.json).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// Grouping and thresholds.
    #[command(flatten)]
    pub qc: QcArgs,
    /// Exit with status 1 when an image is flagged, a group drifts or treatments are
    /// confounded with groups (to gate a pipeline on it).
    #[arg(long)]
    pub strict: bool,
}

const QC_AFTER_HELP: &str = "\
Writes, in OUT/qc/:
  qc_report.html       one self-contained page: verdicts, flagged images with thumbnails and
                       reasons, drift table, treatments against groups, distributions by group,
                       the definition of every measure
  qc_images.csv        per image: group, fields, every QC measure and its robust z, flag, reasons
  qc_drift.csv         per group and measure: Hedges' g, 95% bootstrap interval, flag
  qc_confounding.csv   with --plate-map: images per treatment and group, Cramér's V

Examples:
  cytoseg qc results
  cytoseg qc results --pattern '{instrument}/{date}/*.tif'
  cytoseg qc results --pattern '{plate}_{well}_s{site}_w{channel}.tif' --group-by plate \\
      --plate-map platemap.csv
  cytoseg segment images/ --out results --qc --sidecar acquisition.csv";

/// Runs `cytoseg qc`.
pub fn run(cmd: QcCmd, quiet: bool) -> Result<i32> {
    let report = qc_report(&cmd.out, &cmd.qc.options())?;
    let concerns = print_verdict(&report, quiet);
    Ok(if cmd.strict && concerns { 1 } else { 0 })
}

/// Prints the report's verdict (flagged images, drift, confounding) and where it went; returns
/// whether anything was found.
pub fn print_verdict(report: &QcReport, quiet: bool) -> bool {
    let flagged: Vec<_> = report.flagged().collect();
    let drift: Vec<_> = report.drift.iter().filter(|d| d.flagged).collect();
    let confounded = report.confounding.as_ref().is_some_and(|c| c.flagged);
    if !quiet {
        let ok = report.images.iter().filter(|r| r.status == "ok").count();
        eprintln!(
            "QC: {ok} image(s) in {} group(s); {} flagged",
            report.groups.len(),
            flagged.len()
        );
        for r in flagged.iter().take(20) {
            eprintln!("  {}: {}", r.file, r.reasons.join("; "));
        }
        if flagged.len() > 20 {
            eprintln!("  ... and {} more (see the report)", flagged.len() - 20);
        }
        for d in &drift {
            eprintln!(
                "  drift: {} vs {} on {}: g = {:.2} [{:.2}, {:.2}]",
                d.group, d.against, d.measure, d.g, d.ci.0, d.ci.1
            );
        }
        if let Some(c) = &report.confounding {
            eprintln!(
                "  treatments vs groups: Cramér's V {:.2}{}",
                c.cramers_v,
                if c.flagged { " (confounded)" } else { "" }
            );
        }
        eprintln!("report: {}", report.html.display());
    }
    !flagged.is_empty() || !drift.is_empty() || confounded
}
