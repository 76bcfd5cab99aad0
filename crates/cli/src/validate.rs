//! `cytoseg validate`: segment reference images, score them against their ground truth with
//! the metrics of `cytoseg evaluate`, and pass or fail on an AP bar, so that a lab can gate a
//! batch run on it. Optionally per group of images (`--group-by`) and against the agreement of
//! several annotators (`--truth` repeated); always with an overlay per image and an HTML page
//! (built by `cytoseg_core::qc::validation`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Args;
use rayon::prelude::*;

use super::evaluate::{
    Report, evaluate_pairs, find_label, label_files, print_report, write_reports,
};
use super::progress::Reporter;
use super::qc::GroupArgs;
use super::segment::{ModelArgs, SegmentArgs, memory_budget};
use cytoseg_core::batch;
use cytoseg_core::error::{Error, Result};
use cytoseg_core::io::write_atomic;
use cytoseg_core::metrics::Criterion;
use cytoseg_core::metrics::overlay::LEGEND;
use cytoseg_core::qc::report::{group_fields, group_name, image_fields, read_sidecar};
use cytoseg_core::qc::validation::{
    PageImage, ScoreRow, ValidationPage, annotator_names, group_scores, overlay_png, render_html,
    scores_csv, scores_table,
};

/// Arguments of `cytoseg validate`.
#[derive(Debug, Args)]
#[command(after_long_help = VALIDATE_AFTER_HELP)]
pub struct ValidateCmd {
    /// Folder of reference images.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Folder of their ground-truth label images, paired by file stem (`x.tif` with `x.tif`,
    /// `x.png`, `x.npy`, `x_labels.tif` or `x_masks.tif`). Repeat for several annotators: the
    /// first is the reference the gate uses; each pair of annotators is also scored against
    /// each other, and the model against each.
    #[arg(long, value_name = "DIR", required = true)]
    pub truth: Vec<PathBuf>,
    /// Also take reference images from the sub-folders of --images (labels and overlays mirror
    /// them; the ground truth is looked up at the same relative path, then by file stem).
    #[arg(short, long)]
    pub recursive: bool,
    /// Groups of reference images, each scored and gated on its own.
    #[command(flatten)]
    pub groups: GroupArgs,
    /// Model selection.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Segmentation parameters.
    #[command(flatten)]
    pub seg: SegmentArgs,
    /// The bar: the dataset's AP (tp / (tp + fp + fn), summed over images) at --threshold
    /// must be at least this (and, with groups, every group's).
    #[arg(long, default_value_t = 0.8)]
    pub min_ap: f64,
    /// IoU threshold at which the bar applies (and of the overlays).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// IoU thresholds reported (the --threshold is added when missing).
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.75,0.9")]
    pub thresholds: Vec<f64>,
    /// Folder for the predicted labels (OUT/labels/), the overlays (OUT/overlays/) and the
    /// reports (OUT/validation.json, OUT/validation.csv, OUT/validation.html).
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
Exit status: 0 when the AP at --threshold reaches --min-ap (for the whole set and, with groups,
for every group), 1 when it does not (or an image failed), 2 when validation could not run (no
pairs, bad arguments, model not found). Labels already predicted in OUT/labels by the same
model and parameters are reused.

Writes, in OUT/:
  labels/<stem>_labels.tif    the predicted labels
  validation.json             gate, model, parameters, full report (+ groups, annotators)
  validation.csv              per image and threshold, and the whole set
  validation_groups.csv       with groups: per group and threshold, and the whole set
  validation_annotators.csv   with several --truth: annotator vs annotator, model vs each
  overlays/<stem>.png         the image with outlines at --threshold: green = matched
                              prediction (TP), magenta = unmatched prediction (FP), cyan =
                              unmatched true object (FN)
  validation.html             one self-contained page: verdict, tables, every image worst
                              first (AP, then F1) with its overlay

Groups come from --pattern (named fields in the image paths) and/or --sidecar (CSV: file
column, then field columns), as in `cytoseg qc`; --group-by picks the fields.

Examples:
  cytoseg validate --images ref/images --truth ref/labels --min-ap 0.8 --threshold 0.5 \\
      && cytoseg segment plate/ --out results
  cytoseg validate --images ref/images --recursive --truth ref/labels \\
      --pattern '{instrument}/*.tif' --group-by instrument --min-ap 0.8
  cytoseg validate --images ref/images --truth ref/alice --truth ref/bob --out validation";

/// One reference image scored against the reference annotator.
struct Scored<'a> {
    input: &'a batch::Input,
    name: String,
    truth: PathBuf,
    pred: PathBuf,
    group: Option<String>,
}

/// The name of an input (its stem relative to the images folder, with `/`).
fn stem_name(i: &batch::Input) -> String {
    i.stem
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The ground truth of `input` among `files`: at its relative stem, else by file stem alone.
fn truth_of(files: &BTreeMap<String, PathBuf>, input: &batch::Input) -> Option<PathBuf> {
    find_label(files, &stem_name(input)).or_else(|| {
        let file_stem = input.stem.file_name()?.to_string_lossy().into_owned();
        find_label(files, &file_stem)
    })
}

/// The groups of the inputs (`None` without grouping) and the fields grouped by.
fn groups_of(
    args: &GroupArgs,
    inputs: &[&batch::Input],
) -> Result<Option<(Vec<String>, Vec<String>)>> {
    if !args.any() {
        return Ok(None);
    }
    let sidecar = args.sidecar.as_deref().map(read_sidecar).transpose()?;
    let fields = inputs
        .iter()
        .map(|i| {
            image_fields(
                &i.path.display().to_string(),
                args.pattern.as_deref(),
                sidecar.as_ref(),
                &args.group_by,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let found: BTreeSet<String> = fields.iter().flat_map(|f| f.keys().cloned()).collect();
    let group_by = group_fields(&args.group_by, &found)?;
    if group_by.is_empty() {
        return Err(Error::invalid(format!(
            "--pattern/--sidecar give no field to group by (fields found: {}); name one with --group-by",
            if found.is_empty() {
                "none".to_string()
            } else {
                found.into_iter().collect::<Vec<_>>().join(", ")
            }
        )));
    }
    let names = fields.iter().map(|f| group_name(f, &group_by)).collect();
    Ok(Some((names, group_by)))
}

/// A score row from a report.
fn row(key: Vec<String>, report: &Report) -> ScoreRow {
    ScoreRow {
        key,
        images: report.images.len(),
        dataset: report.dataset.clone(),
    }
}

/// Annotator-vs-annotator rows (on the images both labelled), then model-vs-annotator rows (on
/// the images segmented that the annotator labelled).
fn annotator_rows(
    names: &[String],
    truths: &[BTreeMap<String, PathBuf>],
    inputs: &[batch::Input],
    scored: &[Scored<'_>],
    thresholds: &[f64],
) -> Result<Vec<ScoreRow>> {
    let mut rows = Vec::new();
    for a in 0..names.len() {
        for b in a + 1..names.len() {
            let pairs: Vec<(String, PathBuf, PathBuf)> = inputs
                .iter()
                .filter_map(|i| {
                    Some((
                        stem_name(i),
                        truth_of(&truths[a], i)?,
                        truth_of(&truths[b], i)?,
                    ))
                })
                .collect();
            if pairs.is_empty() {
                log::warn!(
                    "annotators {} and {} labelled no image in common: not compared",
                    names[a],
                    names[b]
                );
                continue;
            }
            let r = evaluate_pairs(&pairs, thresholds, Criterion::Iou, false)?;
            rows.push(row(
                vec![names[a].clone(), names[b].clone(), "annotators".into()],
                &r,
            ));
        }
    }
    for (k, name) in names.iter().enumerate() {
        let pairs: Vec<(String, PathBuf, PathBuf)> = scored
            .iter()
            .filter_map(|s| {
                Some((
                    s.name.clone(),
                    truth_of(&truths[k], s.input)?,
                    s.pred.clone(),
                ))
            })
            .collect();
        if pairs.is_empty() {
            log::warn!(
                "annotator {name} labelled none of the images segmented: model not compared"
            );
            continue;
        }
        let r = evaluate_pairs(&pairs, thresholds, Criterion::Iou, false)?;
        rows.push(row(vec![name.clone(), "model".into(), "model".into()], &r));
    }
    Ok(rows)
}

/// Writes `text` to `path` (replacing it).
fn write_text(path: &Path, text: &[u8]) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(path, true, |w| {
        w.write_all(text).map_err(|e| Error::io(path, e))
    })
}

/// Writes `text` to `path`, or removes a `path` left by an earlier run when `text` is `None`.
fn write_or_remove(path: &Path, text: Option<String>) -> Result<()> {
    match text {
        Some(t) => write_text(path, t.as_bytes()),
        None if path.exists() => std::fs::remove_file(path).map_err(|e| Error::io(path, e)),
        None => Ok(()),
    }
}

/// Runs `cytoseg validate`; 0 = passed, 1 = below the bar or an image failed.
pub fn run(cmd: ValidateCmd, quiet: bool) -> Result<i32> {
    if !(0.0..=1.0).contains(&cmd.threshold) || !(0.0..=1.0).contains(&cmd.min_ap) {
        return Err(Error::invalid(
            "--threshold and --min-ap must lie between 0 and 1",
        ));
    }
    if !cmd.images.is_dir() {
        return Err(Error::invalid(format!(
            "--images {} must be a folder",
            cmd.images.display()
        )));
    }
    if let Some(t) = cmd.truth.iter().find(|t| !t.is_dir()) {
        return Err(Error::invalid(format!(
            "--truth {} must be a folder",
            t.display()
        )));
    }
    let reference = &cmd.truth[0];
    let labels_dir = cmd.out.join("labels");
    std::fs::create_dir_all(&labels_dir).map_err(|e| Error::io(&labels_dir, e))?;
    let truths = cmd
        .truth
        .iter()
        .map(|d| label_files(d, cmd.recursive))
        .collect::<Result<Vec<_>>>()?;
    let names = annotator_names(&cmd.truth);
    let inputs: Vec<batch::Input> =
        batch::expand_inputs(&[cmd.images.display().to_string()], cmd.recursive, &cmd.out)?;
    let (paired, unpaired): (Vec<&batch::Input>, Vec<&batch::Input>) = inputs
        .iter()
        .partition(|i| truth_of(&truths[0], i).is_some());
    if !unpaired.is_empty() {
        log::warn!(
            "{} image(s) have no ground truth in {} and are left out: {}",
            unpaired.len(),
            reference.display(),
            unpaired
                .iter()
                .map(|i| i.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if paired.is_empty() {
        return Err(Error::invalid(format!(
            "no image of {} has a ground-truth label image in {} (paired by file stem{})",
            cmd.images.display(),
            reference.display(),
            if cmd.recursive {
                ""
            } else {
                "; images in sub-folders need --recursive"
            }
        )));
    }
    let grouping = groups_of(&cmd.groups, &paired)?;
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
        classifier: None,
        readouts: Default::default(),
        stack_mode: batch::StackMode::Planes,
    };
    let batch_inputs: Vec<batch::Input> = paired.iter().map(|&i| i.clone()).collect();
    let reporter = Reporter::new(paired.len(), quiet);
    let outcomes = batch::run_batch(&model, &params, &batch_inputs, &opts, &reporter);
    reporter.finish();
    let failed: Vec<&batch::Outcome> = outcomes.iter().filter(|o| o.status == "failed").collect();
    let scored: Vec<Scored<'_>> = paired
        .iter()
        .zip(&outcomes)
        .enumerate()
        .filter(|(_, (_, o))| o.status != "failed")
        .filter_map(|(k, (&i, _))| {
            let name = stem_name(i);
            Some(Scored {
                input: i,
                truth: truth_of(&truths[0], i)?,
                pred: labels_dir.join(format!("{name}_labels.tif")),
                group: grouping.as_ref().map(|(g, _)| g[k].clone()),
                name,
            })
        })
        .collect();
    if scored.is_empty() {
        return Err(Error::invalid("every image failed to segment"));
    }
    let pairs: Vec<(String, PathBuf, PathBuf)> = scored
        .iter()
        .map(|s| (s.name.clone(), s.truth.clone(), s.pred.clone()))
        .collect();
    let mut thresholds = cmd.thresholds.clone();
    if !thresholds.iter().any(|t| (t - cmd.threshold).abs() < 1e-12) {
        thresholds.push(cmd.threshold);
        thresholds.sort_by(f64::total_cmp);
    }
    let report = evaluate_pairs(&pairs, &thresholds, Criterion::Iou, false)?;
    let whole = row(vec!["(all)".into()], &report);
    let gate = whole.ap_at(cmd.threshold);

    // Groups.
    let group_rows: Vec<ScoreRow> = match &grouping {
        Some(_) => {
            let groups: Vec<String> = scored.iter().filter_map(|s| s.group.clone()).collect();
            let per_image: Vec<_> = report.images.iter().map(|i| i.matching.clone()).collect();
            group_scores(&groups, &per_image, &thresholds)
        }
        None => Vec::new(),
    };
    let failing: Vec<&ScoreRow> = group_rows
        .iter()
        .filter(|r| r.below(cmd.threshold, cmd.min_ap))
        .collect();

    // Annotators.
    let annotators: Vec<ScoreRow> = if cmd.truth.len() >= 2 {
        annotator_rows(&names, &truths, &inputs, &scored, &thresholds)?
    } else {
        Vec::new()
    };

    // Overlays.
    let overlays_dir = cmd.out.join("overlays");
    // An image that cannot be drawn (e.g. a stack: the first plane against stack labels) is
    // said and left without an overlay; the scores stand.
    let overlays: Vec<Option<Vec<u8>>> = scored
        .par_iter()
        .map(|s| {
            let png = overlay_png(&s.input.path, &s.truth, &s.pred, cmd.threshold)?;
            write_text(&overlays_dir.join(format!("{}.png", s.name)), &png)?;
            Ok(png)
        })
        .map(|r: Result<Vec<u8>>| r.map_err(|e| log::warn!("no overlay: {e}")).ok())
        .collect();

    let passed = gate >= cmd.min_ap && failed.is_empty() && failing.is_empty();
    if !quiet {
        print_report(&report);
        if let Some((_, by)) = &grouping {
            println!("by {} at IoU {:.2}:", by.join(", "), cmd.threshold);
            print!("{}", scores_table(&["group"], &group_rows, cmd.threshold));
        }
        if !annotators.is_empty() {
            println!(
                "annotators at IoU {:.2} (compared scored against reference; reference annotator: {}):",
                cmd.threshold, names[0]
            );
            print!(
                "{}",
                scores_table(
                    &["reference", "compared", "kind"],
                    &annotators,
                    cmd.threshold
                )
            );
        }
    }
    let json_path = cmd.out.join("validation.json");
    let mut doc = serde_json::json!({
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
        "truth": reference.display().to_string(),
        "finished_utc": batch::utc_now(),
        "evaluation": report,
    });
    if let Some((_, by)) = &grouping {
        doc["groups"] = serde_json::json!({
            "group_by": by,
            "pattern": cmd.groups.pattern,
            "sidecar": cmd.groups.sidecar.as_ref().map(|p| p.display().to_string()),
            "failing": failing.iter().map(|r| r.key[0].clone()).collect::<Vec<_>>(),
            "image_groups": scored.iter().map(|s| (s.name.clone(), s.group.clone().unwrap_or_default())).collect::<BTreeMap<_, _>>(),
            "rows": group_rows,
        });
    }
    if cmd.truth.len() >= 2 {
        doc["annotators"] = serde_json::json!({
            "names": names,
            "folders": cmd.truth.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "reference": names[0],
            "rows": annotators,
        });
    }
    batch::write_json(&json_path, &doc)?;
    write_reports(&report, None, Some(&cmd.out.join("validation.csv")), true)?;
    let mut with_whole = group_rows.clone();
    with_whole.push(whole.clone());
    write_or_remove(
        &cmd.out.join("validation_groups.csv"),
        grouping
            .as_ref()
            .map(|_| scores_csv(&["group"], &with_whole)),
    )?;
    write_or_remove(
        &cmd.out.join("validation_annotators.csv"),
        (cmd.truth.len() >= 2).then(|| scores_csv(&["reference", "compared", "kind"], &annotators)),
    )?;
    for o in &failed {
        eprintln!("FAILED {}: {}", o.input, o.error);
    }
    let groups_text = match &grouping {
        None => String::new(),
        Some(_) if failing.is_empty() => {
            format!("; all {} group(s) >= {:.4}", group_rows.len(), cmd.min_ap)
        }
        Some(_) => format!(
            "; group(s) below the bar: {}",
            failing
                .iter()
                .map(|r| format!(
                    "{} (AP {:.4} < {:.4})",
                    r.label(),
                    r.ap_at(cmd.threshold),
                    cmd.min_ap
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let verdict = format!(
        "{}: AP at IoU {:.2} = {:.4} {} {:.4} over {} image(s){}{}; reports in {}",
        if passed { "PASS" } else { "FAIL" },
        cmd.threshold,
        gate,
        if gate >= cmd.min_ap { ">=" } else { "<" },
        cmd.min_ap,
        pairs.len(),
        groups_text,
        if failed.is_empty() {
            String::new()
        } else {
            format!(", {} image(s) failed", failed.len())
        },
        cmd.out.display()
    );
    let ti = thresholds
        .iter()
        .position(|t| (t - cmd.threshold).abs() < 1e-12)
        .unwrap_or(0);
    let failed_list: Vec<(String, String)> = failed
        .iter()
        .map(|o| (o.input.clone(), o.error.clone()))
        .collect();
    let page = ValidationPage {
        model: format!("{} {}", model.manifest.name, model.manifest.version),
        passed,
        verdict: &verdict,
        threshold: cmd.threshold,
        min_ap: cmd.min_ap,
        whole: &whole,
        images: scored
            .iter()
            .zip(&report.images)
            .zip(overlays)
            .map(|((s, r), png)| PageImage {
                name: s.name.clone(),
                group: s.group.clone(),
                stats: r.matching[ti].clone(),
                overlay: png,
            })
            .collect(),
        groups: &group_rows,
        annotators: &annotators,
        failed: &failed_list,
    };
    let html_path = cmd.out.join("validation.html");
    write_text(&html_path, render_html(&page).as_bytes())?;
    if !quiet {
        eprintln!(
            "overlays in {} ({LEGEND}); page {}",
            overlays_dir.display(),
            html_path.display()
        );
    }
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
