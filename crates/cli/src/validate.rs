//! `cytoseg validate`: segment reference images, score them against their ground truth with
//! the metrics of `cytoseg evaluate`, and pass or fail on an AP bar, so that a lab can gate a
//! batch run on it.

use std::path::PathBuf;

use clap::Args;

use super::evaluate::{evaluate_pairs, label_files, print_report, write_reports};
use super::progress::Reporter;
use super::segment::{ModelArgs, SegmentArgs, memory_budget};
use cytoseg_core::batch;
use cytoseg_core::error::{Error, Result};
use cytoseg_core::metrics::Criterion;

/// Arguments of `cytoseg validate`.
#[derive(Debug, Args)]
#[command(after_long_help = VALIDATE_AFTER_HELP)]
pub struct ValidateCmd {
    /// Folder of reference images.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Folder of their ground-truth label images, paired by file stem (`x.tif` with `x.tif`,
    /// `x.png`, `x.npy`, `x_labels.tif` or `x_masks.tif`).
    #[arg(long, value_name = "DIR")]
    pub truth: PathBuf,
    /// Model selection.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Segmentation parameters.
    #[command(flatten)]
    pub seg: SegmentArgs,
    /// The bar: the dataset's AP (tp / (tp + fp + fn), summed over images) at --threshold
    /// must be at least this.
    #[arg(long, default_value_t = 0.8)]
    pub min_ap: f64,
    /// IoU threshold at which the bar applies.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// IoU thresholds reported (the --threshold is added when missing).
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.75,0.9")]
    pub thresholds: Vec<f64>,
    /// Folder for the predicted labels (OUT/labels/) and the reports (OUT/validation.json,
    /// OUT/validation.csv).
    #[arg(long, value_name = "DIR", default_value = "validation")]
    pub out: PathBuf,
    /// Images segmented at once (default: the number of cores, at most 4).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Segment again even where labels of the same model and parameters exist in OUT/labels.
    #[arg(long)]
    pub overwrite: bool,
}

const VALIDATE_AFTER_HELP: &str = "\
Exit status: 0 when the AP at --threshold reaches --min-ap, 1 when it does not (or an image
failed), 2 when validation could not run (no pairs, bad arguments, model not found).
Labels already predicted in OUT/labels by the same model and parameters are reused.

Example:
  cytoseg validate --images ref/images --truth ref/labels --min-ap 0.8 --threshold 0.5 \\
      && cytoseg segment plate/ --out results";

/// Runs `cytoseg validate`; 0 = passed, 1 = below the bar or an image failed.
pub fn run(cmd: ValidateCmd, quiet: bool) -> Result<i32> {
    if !(0.0..=1.0).contains(&cmd.threshold) || !(0.0..=1.0).contains(&cmd.min_ap) {
        return Err(Error::invalid(
            "--threshold and --min-ap must lie between 0 and 1",
        ));
    }
    if !cmd.images.is_dir() || !cmd.truth.is_dir() {
        return Err(Error::invalid(format!(
            "--images {} and --truth {} must both be folders",
            cmd.images.display(),
            cmd.truth.display()
        )));
    }
    let labels_dir = cmd.out.join("labels");
    std::fs::create_dir_all(&labels_dir).map_err(|e| Error::io(&labels_dir, e))?;
    let truth = label_files(&cmd.truth)?;
    let inputs: Vec<batch::Input> =
        batch::expand_inputs(&[cmd.images.display().to_string()], false, &cmd.out)?;
    let find_truth = |stem: &str| {
        [
            stem.to_string(),
            format!("{stem}_labels"),
            format!("{stem}_masks"),
            format!("{stem}_cp_masks"),
        ]
        .iter()
        .find_map(|s| truth.get(s).cloned())
    };
    let (paired, unpaired): (Vec<_>, Vec<_>) = inputs
        .into_iter()
        .partition(|i| find_truth(&i.stem.display().to_string()).is_some());
    if !unpaired.is_empty() {
        log::warn!(
            "{} image(s) have no ground truth in {} and are left out: {}",
            unpaired.len(),
            cmd.truth.display(),
            unpaired
                .iter()
                .map(|i| i.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if paired.is_empty() {
        return Err(Error::invalid(format!(
            "no image of {} has a ground-truth label image in {} (paired by file stem)",
            cmd.images.display(),
            cmd.truth.display()
        )));
    }
    let model = cmd.model.load()?;
    let params = cmd.seg.params(&model);
    let opts = batch::BatchOptions {
        out: labels_dir.clone(),
        jobs: batch::default_jobs(cmd.jobs),
        memory_budget: memory_budget(None)?,
        overwrite: cmd.overwrite,
        measure: false,
        save_flows: false,
        run_files: true,
        invocation: serde_json::json!(std::env::args().collect::<Vec<_>>()),
    };
    let reporter = Reporter::new(paired.len(), quiet);
    let outcomes = batch::run_batch(&model, &params, &paired, &opts, &reporter);
    reporter.finish();
    let failed: Vec<&batch::Outcome> = outcomes.iter().filter(|o| o.status == "failed").collect();
    let pairs: Vec<(String, PathBuf, PathBuf)> = paired
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.status != "failed")
        .map(|(i, _)| {
            let stem = i.stem.display().to_string();
            let t = find_truth(&stem).expect("paired");
            (
                stem.clone(),
                t,
                labels_dir.join(format!("{stem}_labels.tif")),
            )
        })
        .collect();
    if pairs.is_empty() {
        return Err(Error::invalid("every image failed to segment"));
    }
    let mut thresholds = cmd.thresholds.clone();
    if !thresholds.iter().any(|t| (t - cmd.threshold).abs() < 1e-12) {
        thresholds.push(cmd.threshold);
        thresholds.sort_by(f64::total_cmp);
    }
    let report = evaluate_pairs(&pairs, &thresholds, Criterion::Iou, false)?;
    let gate = report
        .dataset
        .iter()
        .find(|d| (d.thresh - cmd.threshold).abs() < 1e-12)
        .map(|d| d.accuracy)
        .unwrap_or(f64::NAN);
    let passed = gate >= cmd.min_ap && failed.is_empty();
    if !quiet {
        print_report(&report);
    }
    let json_path = cmd.out.join("validation.json");
    let doc = serde_json::json!({
        "passed": passed,
        "gate": {
            "metric": "AP (stardist accuracy, dataset)",
            "threshold": cmd.threshold,
            "min_ap": cmd.min_ap,
            "ap": gate,
        },
        "failed_images": failed.iter().map(|o| serde_json::json!({"input": o.input, "error": o.error})).collect::<Vec<_>>(),
        "model": {
            "name": model.manifest.name,
            "version": model.manifest.version,
            "sha256": model.manifest.model.sha256.to_ascii_lowercase(),
        },
        "onnx_runtime": {"version": model.runtime.version, "provider": model.device.name()},
        "parameters": batch::params_json(&model, &params),
        "images": cmd.images.display().to_string(),
        "truth": cmd.truth.display().to_string(),
        "finished_utc": batch::utc_now(),
        "evaluation": report,
    });
    batch::write_json(&json_path, &doc)?;
    write_reports(&report, None, Some(&cmd.out.join("validation.csv")), true)?;
    for o in &failed {
        eprintln!("FAILED {}: {}", o.input, o.error);
    }
    let verdict = format!(
        "{}: AP at IoU {:.2} = {:.4} {} {:.4} over {} image(s){}; reports in {}",
        if passed { "PASS" } else { "FAIL" },
        cmd.threshold,
        gate,
        if gate >= cmd.min_ap { ">=" } else { "<" },
        cmd.min_ap,
        pairs.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(", {} image(s) failed", failed.len())
        },
        cmd.out.display()
    );
    if passed {
        if !quiet {
            println!("{verdict}");
        }
        Ok(0)
    } else {
        println!("{verdict}");
        Ok(1)
    }
}
