//! `cytoseg evaluate`: score predicted label images against ground truth with the metrics of
//! `stardist.matching` and `cellpose.metrics`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use cytoseg_core::error::{Error, Result};
use cytoseg_core::io::labels::read_label_stack;
use cytoseg_core::io::write_atomic;
use cytoseg_core::metrics::{
    Criterion, DatasetMatchingStats, LabelOverlap, MatchingStats, aggregate,
    average_precision_from_overlap, foreground_scores, matching_from_overlap,
};

/// Arguments of `cytoseg evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateCmd {
    /// Ground-truth label image (.tif, .npy, .png) or a folder of them. Label stacks
    /// (multi-page TIFF, (Z, H, W) .npy) are scored in 3-D.
    #[arg(long)]
    pub truth: PathBuf,
    /// Predicted label image or folder; folders are paired by file stem (a prediction may add
    /// `_labels` or `_masks` to the truth's stem, as `cytoseg segment` and Cellpose write them).
    #[arg(long)]
    pub pred: PathBuf,
    /// IoU (or criterion) thresholds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.75,0.9")]
    pub thresholds: Vec<f64>,
    /// Matching criterion: iou, iot (over truth) or iop (over prediction).
    #[arg(long, default_value = "iou")]
    pub criterion: String,
    /// Dataset scores as the mean of per-image scores instead of from summed counts
    /// (stardist's `by_image`).
    #[arg(long)]
    pub by_image: bool,
    /// Write the full report as JSON (stardist's field names, per image and for the dataset,
    /// plus Cellpose's `ap` per image).
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write one row per image and threshold (and the dataset rows) as CSV.
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
    /// Replace existing report files.
    #[arg(long)]
    pub overwrite: bool,
}

/// Scores of one image pair.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    /// Pair name (the truth's file stem).
    pub name: String,
    /// Ground-truth file.
    pub truth: String,
    /// Prediction file.
    pub pred: String,
    /// stardist `matching` per threshold.
    pub matching: Vec<MatchingStats>,
    /// cellpose `average_precision` per threshold (NaN where cellpose gives NaN).
    pub cellpose_ap: Vec<f32>,
    /// Pixel-level foreground Dice.
    pub dice: f64,
    /// Pixel-level foreground IoU.
    pub foreground_iou: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Engine version.
    pub cytoseg_version: &'static str,
    /// Criterion used.
    pub criterion: String,
    /// Thresholds used.
    pub thresholds: Vec<f64>,
    /// Whether dataset ratios are means of per-image values.
    pub by_image: bool,
    /// stardist `matching_dataset` per threshold.
    pub dataset: Vec<DatasetMatchingStats>,
    /// Per image.
    pub images: Vec<ImageReport>,
}

const EXTS: [&str; 4] = ["tif", "tiff", "npy", "png"];

/// The label images of `dir` by stem; with `recursive`, those of its sub-folders too, by stem
/// relative to `dir` (`sub/x` for `dir/sub/x.tif`; hidden entries left out).
pub(crate) fn label_files(dir: &Path, recursive: bool) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = todo.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let p = e.map_err(|e| Error::io(&d, e))?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if recursive && p.is_dir() && !name.starts_with('.') {
                todo.push((p.clone(), format!("{prefix}{name}/")));
                continue;
            }
            let ok = p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| EXTS.contains(&x.to_ascii_lowercase().as_str()));
            if let Some(stem) = p.file_stem().filter(|_| ok && p.is_file()) {
                out.insert(format!("{prefix}{}", stem.to_string_lossy()), p.clone());
            }
        }
    }
    Ok(out)
}

/// The label image of `files` (from [`label_files`]) for the image stem `stem`: `stem` itself,
/// or with `_labels`, `_masks` or `_cp_masks` added (as `cytoseg segment` and Cellpose name
/// them).
pub(crate) fn find_label(files: &BTreeMap<String, PathBuf>, stem: &str) -> Option<PathBuf> {
    [
        stem.to_string(),
        format!("{stem}_labels"),
        format!("{stem}_masks"),
        format!("{stem}_cp_masks"),
    ]
    .iter()
    .find_map(|s| files.get(s).cloned())
}

/// Pairs of (name, truth, prediction).
fn pairs(truth: &Path, pred: &Path) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    match (truth.is_dir(), pred.is_dir()) {
        (false, false) => {
            let name = truth
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(vec![(name, truth.to_path_buf(), pred.to_path_buf())])
        }
        (true, true) => {
            let t = label_files(truth, false)?;
            let p = label_files(pred, false)?;
            let mut out = Vec::new();
            let mut missing = Vec::new();
            for (stem, tp) in &t {
                match find_label(&p, stem) {
                    Some(pp) => out.push((stem.clone(), tp.clone(), pp)),
                    None => missing.push(stem.clone()),
                }
            }
            if !missing.is_empty() {
                log::warn!(
                    "{} truth image(s) have no prediction: {}",
                    missing.len(),
                    missing.join(", ")
                );
            }
            if out.is_empty() {
                return Err(Error::invalid(format!(
                    "no label images of {} pair with those of {} by file stem",
                    truth.display(),
                    pred.display()
                )));
            }
            Ok(out)
        }
        _ => Err(Error::invalid(
            "--truth and --pred must both be files or both be folders",
        )),
    }
}

/// Scores the pairs and builds the report (the core of `cytoseg evaluate` and `validate`).
pub fn evaluate_pairs(
    pairs: &[(String, PathBuf, PathBuf)],
    thresholds: &[f64],
    criterion: Criterion,
    by_image: bool,
) -> Result<Report> {
    use rayon::prelude::*;
    cytoseg_core::metrics::check_thresholds(thresholds)?;
    let images: Vec<ImageReport> = pairs
        .par_iter()
        .map(|(name, tp, pp)| {
            // Label stacks (multi-page TIFF, (Z, H, W) .npy) are scored as volumes: objects
            // matched in 3-D by their voxel overlaps, as stardist.matching on 3-D arrays.
            let (t, td, th, tw) = read_label_stack(tp)?;
            let (p, pd, ph, pw) = read_label_stack(pp)?;
            if (td, th, tw) != (pd, ph, pw) {
                let size = |d: usize, h: usize, w: usize| {
                    if d > 1 {
                        format!("{d}×{h}×{w}")
                    } else {
                        format!("{h}×{w}")
                    }
                };
                return Err(Error::shape(format!(
                    "{}: truth {} is {}, prediction {} is {}",
                    name,
                    tp.display(),
                    size(td, th, tw),
                    pp.display(),
                    size(pd, ph, pw)
                )));
            }
            let ov = LabelOverlap::new(&t, &p)?;
            let matching = matching_from_overlap(&ov, thresholds, criterion, false)?;
            let cp = average_precision_from_overlap(&ov, thresholds);
            let fg = foreground_scores(&t, &p)?;
            Ok(ImageReport {
                name: name.clone(),
                truth: tp.display().to_string(),
                pred: pp.display().to_string(),
                matching,
                cellpose_ap: cp.ap,
                dice: fg.dice,
                foreground_iou: fg.iou,
            })
        })
        .collect::<Result<_>>()?;
    let per_image: Vec<Vec<MatchingStats>> = images.iter().map(|i| i.matching.clone()).collect();
    let dataset = aggregate(&per_image, thresholds, criterion, by_image);
    Ok(Report {
        cytoseg_version: cytoseg_core::VERSION,
        criterion: criterion.as_str().to_string(),
        thresholds: thresholds.to_vec(),
        by_image,
        dataset,
        images,
    })
}

/// Prints the dataset table (and per-image AP when there are few images). A closed pipe
/// (`cytoseg evaluate ... | head`) ends the printing quietly.
pub fn print_report(r: &Report) {
    let _ = write_report(r, &mut std::io::stdout().lock());
}

fn write_report(r: &Report, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} image(s), criterion {}{}",
        r.images.len(),
        r.criterion,
        if r.by_image { ", by image" } else { "" }
    )?;
    writeln!(
        out,
        "{:>6} {:>7} {:>7} {:>7} {:>7} {:>9} {:>7} {:>9} {:>7} {:>7}",
        "thresh", "n_true", "n_pred", "tp", "fp", "fn", "AP", "precision", "recall", "F1"
    )?;
    for d in &r.dataset {
        writeln!(
            out,
            "{:>6.2} {:>7} {:>7} {:>7} {:>7} {:>9} {:>7.4} {:>9.4} {:>7.4} {:>7.4}   PQ {:.4}",
            d.thresh,
            d.n_true,
            d.n_pred,
            d.tp,
            d.fp,
            d.fn_,
            d.accuracy,
            d.precision,
            d.recall,
            d.f1,
            d.panoptic_quality
        )?;
    }
    if r.images.len() > 1 && r.images.len() <= 50 {
        writeln!(
            out,
            "per image: AP at {:?} (cellpose ap identical where both are defined)",
            r.thresholds
        )?;
        for i in &r.images {
            let aps: Vec<String> = i
                .matching
                .iter()
                .map(|m| format!("{:.3}", m.accuracy))
                .collect();
            writeln!(
                out,
                "  {:<40} {}  dice {:.3}",
                i.name,
                aps.join(" "),
                i.dice
            )?;
        }
    }
    Ok(())
}

fn csv_text(r: &Report) -> String {
    let mut s = String::from(
        "image,thresh,criterion,n_true,n_pred,tp,fp,fn,precision,recall,accuracy,f1,mean_true_score,mean_matched_score,panoptic_quality,cellpose_ap,dice,foreground_iou\n",
    );
    for i in &r.images {
        for (k, m) in i.matching.iter().enumerate() {
            s += &format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                csv_field(&i.name),
                m.thresh,
                r.criterion,
                m.n_true,
                m.n_pred,
                m.tp,
                m.fp,
                m.fn_,
                m.precision,
                m.recall,
                m.accuracy,
                m.f1,
                m.mean_true_score,
                m.mean_matched_score,
                m.panoptic_quality,
                i.cellpose_ap[k],
                i.dice,
                i.foreground_iou
            );
        }
    }
    for d in &r.dataset {
        s += &format!(
            "{},{},{},{},,,\n",
            if r.by_image {
                "(dataset, by image)"
            } else {
                "(dataset)"
            },
            d.thresh,
            r.criterion,
            d.csv_values()
        );
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes the JSON and CSV reports requested.
pub fn write_reports(
    r: &Report,
    json: Option<&Path>,
    csv: Option<&Path>,
    overwrite: bool,
) -> Result<()> {
    use std::io::Write;
    if let Some(p) = json {
        let text = serde_json::to_string_pretty(r).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(p, overwrite, |w| {
            w.write_all(text.as_bytes()).map_err(|e| Error::io(p, e))
        })?;
    }
    if let Some(p) = csv {
        let text = csv_text(r);
        write_atomic(p, overwrite, |w| {
            w.write_all(text.as_bytes()).map_err(|e| Error::io(p, e))
        })?;
    }
    Ok(())
}

/// Runs `cytoseg evaluate`.
pub fn run(cmd: EvaluateCmd) -> Result<i32> {
    let criterion: Criterion = cmd.criterion.parse()?;
    for p in [&cmd.json, &cmd.csv].into_iter().flatten() {
        if p.exists() && !cmd.overwrite {
            return Err(Error::invalid(format!(
                "{} already exists (use --overwrite to replace it)",
                p.display()
            )));
        }
    }
    let pairs = pairs(&cmd.truth, &cmd.pred)?;
    let report = evaluate_pairs(&pairs, &cmd.thresholds, criterion, cmd.by_image)?;
    print_report(&report);
    write_reports(
        &report,
        cmd.json.as_deref(),
        cmd.csv.as_deref(),
        cmd.overwrite,
    )?;
    Ok(0)
}
