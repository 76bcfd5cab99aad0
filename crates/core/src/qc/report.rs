//! The QC report of a segmentation run: per-image outliers within acquisition groups, drift
//! between groups, and a confounding check against a plate map, as CSV tables and one
//! self-contained HTML page (inline SVG plots and PNG thumbnails; nothing fetched to open it).
//!
//! Everything is computed from the run's `summary.csv` (the QC measures of [`super::MEASURES`]
//! and the object columns), `run.json` (model, label files) and the inputs themselves (for the
//! thumbnails of flagged images).
//!
//! * **Groups** come from the input paths through a pattern with named fields
//!   (`{instrument}/{date}/*.tif`: `{name}` matches one or more characters within a folder or
//!   file name, `*` any characters within one, `**` any folders; the pattern matches the end of
//!   the path), and/or from a sidecar CSV (`file` column, then one column per field; a row
//!   matches a path equal to or ending in its `file`), and from the TIFF header (`date` and
//!   `instrument`, see [`crate::io::tiff::acquisition_metadata`]; used when no pattern or
//!   sidecar is given, or when `group_by` names them). The group of an image is the values of
//!   the `group_by` fields (default: every field except well, row, column, site, field and
//!   channel).
//! * **Outliers:** within its group, each measure of an image gets a robust z-score
//!   `(x − median) / (1.4826 · MAD)` on the measure's compared scale (ln(x + offset) for the
//!   multiplicative ones). An image is flagged when a judged measure deviates in its bad
//!   direction by more than `z` (default 3.0; see docs/qc.md for how it was chosen) *and* by at least
//!   the measure's `min_change`; images without objects are always flagged. The median and MAD
//!   are those of the group's images left after a first pass that set the clear outliers aside.
//! * **Drift:** each group against all other images (flagged images set aside: drift is a
//!   shift of the whole group, not its outliers), per measure: Hedges' g (standardised mean
//!   difference with the small-sample correction) with a 95% percentile-bootstrap interval
//!   (2000 resamples, fixed seed). A measure drifts when the whole interval lies beyond
//!   ±`drift` (default 0.5, a medium effect): the groups differ by at least that much with 95%
//!   confidence. With two groups only the first is compared (the other comparison mirrors it).
//! * **Confounding:** with a plate map (CSV: `well`, `treatment`, optional `control`) and a
//!   `well` field, the treatments are cross-tabulated against the groups; Cramér's V ≥ 0.5 is
//!   flagged (treatments largely imaged in their own groups: their differences may be the
//!   instrument's).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use super::{Bad, MEASURES, median};
use crate::error::{Error, Result};
use crate::io::image::read_stack;
use crate::io::labels::read_labels;
use crate::io::write_atomic;
use crate::measure::csv_field;
use crate::metrics::overlay::{Stretch, is_outline};
use crate::model::ChannelChoice;
use crate::report_util::{esc, html_head, png_bytes, png_img_tag};
use crate::screen::platemap::PlateMap;
use crate::train::rng::Rng;

/// Fields that locate an image within a group rather than name a group.
const POSITION_FIELDS: &[&str] = &["well", "row", "column", "col", "site", "field", "channel"];

/// What to compare and how strictly.
///
/// The hosts (C API, Fiji, Python) pass these as a JSON object read by
/// [`QcOptions::from_json`]: the same field names, each optional (`{"pattern": "{plate}_*.tif",
/// "group_by": ["plate"], "plate_map": "map.csv"}`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QcOptions {
    /// Path pattern with named fields (see the module documentation).
    pub pattern: Option<String>,
    /// Sidecar CSV with a `file` column and one column per field.
    pub sidecar: Option<PathBuf>,
    /// Fields whose values form an image's group (empty: the default rule).
    pub group_by: Vec<String>,
    /// Plate map CSV (`well`, `treatment`, optional `control`).
    pub plate_map: Option<PathBuf>,
    /// Further `summary.csv` columns to plot and compare between groups.
    pub measures: Vec<String>,
    /// Robust z-score beyond which a judged measure flags an image.
    pub z: f64,
    /// Effect size (Hedges' g) whose 95% interval must lie beyond ± this to flag drift.
    pub drift: f64,
    /// Most thumbnails of flagged images in the HTML page.
    pub thumbnails: usize,
}

impl Default for QcOptions {
    fn default() -> Self {
        QcOptions {
            pattern: None,
            sidecar: None,
            group_by: Vec::new(),
            plate_map: None,
            measures: Vec::new(),
            z: 3.0,
            drift: 0.5,
            thumbnails: 30,
        }
    }
}

impl QcOptions {
    /// Options from a JSON object with any of the fields of [`QcOptions`] (`pattern`, `sidecar`,
    /// `plate_map`: strings or null; `group_by`, `measures`: arrays of strings or one
    /// comma-separated string; `z`, `drift`: numbers; `thumbnails`: a count); missing fields
    /// take their defaults, an empty text or `null` gives the defaults. The one conversion of
    /// report options every host uses. Errors name the field at fault.
    pub fn from_json(text: &str) -> Result<QcOptions> {
        let text = text.trim();
        if text.is_empty() || text == "null" {
            return Ok(QcOptions::default());
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum List {
            One(String),
            Many(Vec<String>),
        }
        // Lists may come as one comma-separated string (what a dialog field holds).
        let mut value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("QC options: not JSON: {e}")))?;
        if let Some(map) = value.as_object_mut() {
            for key in ["group_by", "measures"] {
                if let Some(v) = map.get_mut(key) {
                    let list = match serde_json::from_value::<Option<List>>(v.clone()) {
                        Ok(None) => Vec::new(),
                        Ok(Some(List::One(s))) => split_list(&s),
                        Ok(Some(List::Many(l))) => l.iter().flat_map(|s| split_list(s)).collect(),
                        Err(_) => {
                            return Err(Error::invalid(format!(
                                "QC options: {key} must be a list of names or one comma-separated string, got {v}"
                            )));
                        }
                    };
                    *v = serde_json::json!(list);
                }
            }
            // Empty strings stand for "not given" (an empty dialog field).
            for key in ["pattern", "sidecar", "plate_map"] {
                if map
                    .get(key)
                    .and_then(|v| v.as_str())
                    .is_some_and(|s| s.trim().is_empty())
                {
                    map.insert(key.into(), serde_json::Value::Null);
                }
            }
        }
        let opts: QcOptions = serde_json::from_value(value)
            .map_err(|e| Error::invalid(format!("QC options: {e}")))?;
        opts.check()?;
        Ok(opts)
    }

    /// Checks the thresholds (`z` > 0, `drift` ≥ 0, both finite).
    pub fn check(&self) -> Result<()> {
        if !(self.z.is_finite() && self.z > 0.0) {
            return Err(Error::invalid(format!(
                "QC options: z must be a positive number, got {}",
                self.z
            )));
        }
        if !(self.drift.is_finite() && self.drift >= 0.0) {
            return Err(Error::invalid(format!(
                "QC options: drift must be a number >= 0, got {}",
                self.drift
            )));
        }
        Ok(())
    }
}

/// The names of a comma-separated list, trimmed, empty ones dropped.
fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// One compared column.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    formula: String,
    bad: Bad,
    log_offset: Option<f64>,
    flags: bool,
    min_change: f64,
    /// The per-image median of an object-table column (`<stem>_objects.csv`), not a
    /// `summary.csv` column.
    from_objects: bool,
}

impl Column {
    fn scaled(&self, v: f64) -> f64 {
        match self.log_offset {
            Some(o) if v.is_finite() => (v + o).max(1e-12).ln(),
            _ => v,
        }
    }

    fn unscaled(&self, t: f64) -> f64 {
        match self.log_offset {
            Some(o) => t.exp() - o,
            None => t,
        }
    }
}

/// One image of the run, as the report sees it.
#[derive(Debug, Clone)]
pub struct ImageRow {
    /// The input file.
    pub file: String,
    /// Its status in the run ("ok", "failed", ...).
    pub status: String,
    /// Fields from the pattern and the sidecar.
    pub fields: BTreeMap<String, String>,
    /// Its group ("all" without groups).
    pub group: String,
    /// Objects found.
    pub objects: f64,
    /// Values of the compared columns (NaN where empty).
    pub values: Vec<f64>,
    /// Robust z-scores of the compared columns within the group.
    pub z: Vec<f64>,
    /// Why it is flagged (empty: not flagged).
    pub reasons: Vec<String>,
}

/// One group compared with the other images on one measure.
#[derive(Debug, Clone)]
pub struct Drift {
    /// The group.
    pub group: String,
    /// What it is compared with ("all other images" or the other group's name).
    pub against: String,
    /// The measure.
    pub measure: String,
    /// Images in the group and in the comparison with a value.
    pub n: (usize, usize),
    /// Hedges' g (group minus comparison, on the compared scale).
    pub g: f64,
    /// 95% bootstrap interval of g.
    pub ci: (f64, f64),
    /// The interval lies beyond ± the drift threshold.
    pub flagged: bool,
}

/// Treatments against acquisition groups.
#[derive(Debug, Clone)]
pub struct Confounding {
    /// Treatment names (rows).
    pub treatments: Vec<String>,
    /// Group names (columns).
    pub groups: Vec<String>,
    /// Image counts, `counts[treatment][group]`.
    pub counts: Vec<Vec<usize>>,
    /// Cramér's V of the table (0: independent, 1: each treatment in its own groups).
    pub cramers_v: f64,
    /// V ≥ 0.5.
    pub flagged: bool,
}

/// The report's findings and where its files went.
#[derive(Debug, Clone)]
pub struct QcReport {
    /// Every image of the run.
    pub images: Vec<ImageRow>,
    /// The compared columns, in `values` order.
    pub columns: Vec<String>,
    /// The groups, in order of first appearance.
    pub groups: Vec<String>,
    /// Drift of each group on each measure.
    pub drift: Vec<Drift>,
    /// The confounding check, with a plate map.
    pub confounding: Option<Confounding>,
    /// The HTML page.
    pub html: PathBuf,
    /// The CSV tables written.
    pub tables: Vec<PathBuf>,
}

impl QcReport {
    /// Images flagged as outliers.
    pub fn flagged(&self) -> impl Iterator<Item = &ImageRow> {
        self.images.iter().filter(|r| !r.reasons.is_empty())
    }

    /// The report's verdict in numbers (what the hosts print or show).
    pub fn counts(&self) -> QcCounts {
        QcCounts {
            images: self.images.iter().filter(|r| r.status == "ok").count(),
            groups: self.groups.len(),
            flagged: self.flagged().count(),
            drifting: self.drift.iter().filter(|d| d.flagged).count(),
            confounded: self.confounding.as_ref().is_some_and(|c| c.flagged),
        }
    }
}

/// The verdict of a QC report in numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QcCounts {
    /// Images segmented ("ok" in `summary.csv`).
    pub images: usize,
    /// Acquisition groups compared.
    pub groups: usize,
    /// Images flagged as outliers (images without objects included).
    pub flagged: usize,
    /// (group, measure) pairs that drift.
    pub drifting: usize,
    /// Treatments confounded with groups (with a plate map).
    pub confounded: bool,
}

/// Builds the QC report of the run in `out` and writes it to `out/qc/` (`qc_report.html`,
/// `qc_images.csv`, `qc_drift.csv`, `qc_confounding.csv` with a plate map). Errors name the
/// file or option at fault.
pub fn qc_report(out: &Path, opts: &QcOptions) -> Result<QcReport> {
    let summary_path = out.join("summary.csv");
    let text = std::fs::read_to_string(&summary_path).map_err(|e| {
        Error::invalid(format!(
            "{}: {e} (run `cytoseg segment --out {}` first)",
            summary_path.display(),
            out.display()
        ))
    })?;
    let table = parse_csv(&text);
    let header = table
        .first()
        .ok_or_else(|| Error::invalid(format!("{} is empty", summary_path.display())))?;
    let col_of = |name: &str| header.iter().position(|h| h == name);
    let (Some(file_col), Some(status_col), Some(obj_col)) =
        (col_of("file"), col_of("status"), col_of("objects"))
    else {
        return Err(Error::invalid(format!(
            "{} lacks the file, status or objects column: not a cytoseg summary",
            summary_path.display()
        )));
    };
    let columns = compared_columns(&opts.measures, header)?;
    let run: serde_json::Value = std::fs::read_to_string(out.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);

    let sidecar = match &opts.sidecar {
        Some(p) => Some(read_sidecar(p)?),
        None => None,
    };
    let mut images = Vec::new();
    let mut field_names: BTreeSet<String> = BTreeSet::new();
    for row in table.iter().skip(1).filter(|r| r.len() > 1) {
        let cell = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let file = cell(file_col).to_string();
        let fields = image_fields(
            &file,
            opts.pattern.as_deref(),
            sidecar.as_ref(),
            &opts.group_by,
        )?;
        field_names.extend(fields.keys().cloned());
        let mut object_table: Option<Option<Vec<Vec<String>>>> = None;
        let values = columns
            .iter()
            .map(|c| {
                if c.from_objects {
                    let rows = match &object_table {
                        Some(t) => t,
                        None => object_table.insert(objects_rows(out, &run, &file)),
                    };
                    return object_median(rows.as_ref(), &c.name, &file);
                }
                let i = col_of(&c.name).expect("checked");
                Ok(cell(i).parse::<f64>().unwrap_or(f64::NAN))
            })
            .collect::<Result<Vec<f64>>>()?;
        images.push(ImageRow {
            file,
            status: cell(status_col).to_string(),
            fields,
            group: String::new(),
            objects: cell(obj_col).parse().unwrap_or(f64::NAN),
            values,
            z: vec![f64::NAN; columns.len()],
            reasons: Vec::new(),
        });
    }
    if images.is_empty() {
        return Err(Error::invalid(format!(
            "{} lists no images",
            summary_path.display()
        )));
    }

    // Groups.
    let group_by = group_fields(&opts.group_by, &field_names)?;
    let mut groups: Vec<String> = Vec::new();
    for im in images.iter_mut() {
        im.group = group_name(&im.fields, &group_by);
        if im.status == "ok" && !groups.contains(&im.group) {
            groups.push(im.group.clone());
        }
    }

    flag_outliers(&mut images, &columns, &groups, opts);
    let drift = drift_table(&images, &columns, &groups, opts.drift);
    let confounding = match &opts.plate_map {
        Some(p) => Some(confounding(&images, &groups, p)?),
        None => None,
    };

    let dir = out.join("qc");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut tables = vec![dir.join("qc_images.csv"), dir.join("qc_drift.csv")];
    write_text(&tables[0], &images_csv(&images, &columns))?;
    write_text(&tables[1], &drift_csv(&drift))?;
    if let Some(c) = &confounding {
        let p = dir.join("qc_confounding.csv");
        write_text(&p, &confounding_csv(c))?;
        tables.push(p);
    }
    let report = QcReport {
        images,
        columns: columns.iter().map(|c| c.name.clone()).collect(),
        groups,
        drift,
        confounding,
        html: dir.join("qc_report.html"),
        tables,
    };
    let html = render_html(out, &run, &report, &columns, opts);
    write_text(&report.html, &html)?;
    Ok(report)
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, true, |w| {
        w.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

/// The QC measures, then objects and area_median, then the requested columns.
fn compared_columns(extra: &[String], header: &[String]) -> Result<Vec<Column>> {
    let mut cols: Vec<Column> = MEASURES
        .iter()
        .map(|m| Column {
            name: m.name.into(),
            formula: m.formula.into(),
            bad: m.bad,
            log_offset: m.log_offset,
            flags: m.flags,
            min_change: m.min_change,
            from_objects: false,
        })
        .collect();
    let plain = |name: &str, formula: &str| Column {
        name: name.into(),
        formula: formula.into(),
        bad: Bad::Both,
        log_offset: Some(1.0),
        flags: false,
        min_change: f64::INFINITY,
        from_objects: false,
    };
    cols.push(plain("objects", "objects found in the image"));
    cols.push(plain("area_median", "median object area, in the area unit"));
    for e in extra {
        if cols.iter().any(|c| &c.name == e) {
            continue;
        }
        if header.contains(e) {
            cols.push(plain(e, "a column of summary.csv"));
        } else {
            // Checked when the objects tables are read: an error names the columns they have.
            cols.push(Column {
                formula: format!(
                    "median over the image's objects of the {e} column of <stem>_objects.csv"
                ),
                from_objects: true,
                ..plain(e, "")
            });
        }
    }
    cols.retain(|c| c.from_objects || header.contains(&c.name));
    Ok(cols)
}

/// The rows of an image's objects table (found through `run.json`'s outputs); `None` when the
/// run wrote none (e.g. `--no-objects`) or it cannot be read.
fn objects_rows(out: &Path, run: &serde_json::Value, file: &str) -> Option<Vec<Vec<String>>> {
    let table = run
        .get("images")
        .and_then(|v| v.as_array())
        .and_then(|a| {
            a.iter()
                .find(|i| i.get("input").and_then(|v| v.as_str()) == Some(file))
        })
        .and_then(|i| i.get("outputs")?.as_object())
        .and_then(|o| o.keys().find(|k| k.ends_with("_objects.csv")).cloned());
    table
        .and_then(|t| std::fs::read_to_string(out.join(t)).ok())
        .map(|text| parse_csv(&text))
}

/// The median of an objects-table column (its name without a ` [unit]` suffix); NaN for an
/// image without objects; an error naming the columns there are when the table lacks it.
fn object_median(rows: Option<&Vec<Vec<String>>>, name: &str, file: &str) -> Result<f64> {
    let Some(rows) = rows else {
        return Err(Error::invalid(format!(
            "measure {name:?} is not a column of summary.csv, and {file} has no objects table in the run"
        )));
    };
    let Some(header) = rows.first() else {
        return Ok(f64::NAN);
    };
    let Some(c) = header
        .iter()
        .position(|h| h == name || h.split(" [").next() == Some(name))
    else {
        return Err(Error::invalid(format!(
            "measure {name:?} is neither a column of summary.csv nor of the objects table of {file} (its columns: {})",
            header.join(", ")
        )));
    };
    let mut v: Vec<f64> = rows[1..]
        .iter()
        .filter_map(|r| r.get(c)?.parse().ok())
        .collect();
    Ok(median(&mut v))
}

/// Median and robust scale (1.4826 · MAD) of one column over the images `idx`.
fn location_scale(images: &[ImageRow], idx: &[usize], col: &Column, c: usize) -> (f64, f64) {
    let mut vals: Vec<f64> = idx
        .iter()
        .map(|&i| col.scaled(images[i].values[c]))
        .collect();
    let med = median(&mut vals);
    let mut dev: Vec<f64> = vals.iter().map(|v| (v - med).abs()).collect();
    (med, 1.4826 * median(&mut dev))
}

/// The robust z of `x` (scaled) against a location and scale; ±∞ for any difference from a
/// group without spread.
fn robust_z(x: f64, med: f64, scale: f64) -> f64 {
    let d = x - med;
    if scale > 0.0 {
        d / scale
    } else if d == 0.0 {
        0.0
    } else {
        d.signum() * f64::INFINITY
    }
}

/// Whether a column flags the scaled value `x` against `(med, scale)`.
fn judged_outlier(col: &Column, x: f64, med: f64, scale: f64, z_thr: f64) -> bool {
    let z = robust_z(x, med, scale);
    let wrong_way = match col.bad {
        Bad::Low => z < -z_thr,
        Bad::High => z > z_thr,
        Bad::Both => z.abs() > z_thr,
    };
    col.flags && wrong_way && (x - med).abs() >= col.min_change
}

/// Flags outliers within each group in two passes: the first finds the clear outliers with the
/// whole group's median and MAD; the second measures every image against the median and MAD
/// of the images the first pass left (degraded images widen a MAD computed with them in; a
/// one-step reweighting, documented in docs/qc.md).
fn flag_outliers(images: &mut [ImageRow], columns: &[Column], groups: &[String], opts: &QcOptions) {
    for g in groups {
        let idx: Vec<usize> = (0..images.len())
            .filter(|&i| images[i].status == "ok" && &images[i].group == g)
            .collect();
        if idx.len() < 3 {
            continue;
        }
        let first: Vec<(f64, f64)> = (0..columns.len())
            .map(|c| location_scale(images, &idx, &columns[c], c))
            .collect();
        let kept: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| {
                images[i].objects != 0.0
                    && columns.iter().enumerate().all(|(c, col)| {
                        let x = col.scaled(images[i].values[c]);
                        x.is_nan() || !judged_outlier(col, x, first[c].0, first[c].1, opts.z)
                    })
            })
            .collect();
        let basis = if kept.len() >= 3 { &kept } else { &idx };
        for (c, col) in columns.iter().enumerate() {
            let (med, scale) = location_scale(images, basis, col, c);
            if med.is_nan() {
                continue;
            }
            for &i in &idx {
                let x = col.scaled(images[i].values[c]);
                if x.is_nan() {
                    continue;
                }
                let z = robust_z(x, med, scale);
                images[i].z[c] = z;
                if judged_outlier(col, x, med, scale, opts.z) {
                    let word = if x < med { "low" } else { "high" };
                    images[i].reasons.push(format!(
                        "{} {word}: {} (group median {}, z {})",
                        col.name,
                        fmt_num(images[i].values[c]),
                        fmt_num(col.unscaled(med)),
                        if z.is_finite() {
                            format!("{z:.1}")
                        } else {
                            "∞".into()
                        }
                    ));
                }
            }
        }
        for &i in &idx {
            if images[i].objects == 0.0 {
                images[i].reasons.insert(0, "no objects found".into());
            }
        }
    }
}

/// Hedges' g of `a` against `b` (NaN when either has fewer than 2 values or no spread).
fn hedges_g(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if n1 < 2.0 || n2 < 2.0 {
        return f64::NAN;
    }
    let m1 = a.iter().sum::<f64>() / n1;
    let m2 = b.iter().sum::<f64>() / n2;
    let v1 = a.iter().map(|x| (x - m1).powi(2)).sum::<f64>() / (n1 - 1.0);
    let v2 = b.iter().map(|x| (x - m2).powi(2)).sum::<f64>() / (n2 - 1.0);
    let sp = (((n1 - 1.0) * v1 + (n2 - 1.0) * v2) / (n1 + n2 - 2.0)).sqrt();
    if sp <= 0.0 {
        return f64::NAN;
    }
    let j = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0);
    j * (m1 - m2) / sp
}

/// g and its 95% percentile-bootstrap interval (2000 resamples of each side, seeded).
fn g_with_ci(a: &[f64], b: &[f64], seed: u64) -> (f64, (f64, f64)) {
    let g = hedges_g(a, b);
    if g.is_nan() {
        return (g, (f64::NAN, f64::NAN));
    }
    let mut rng = Rng::new(seed);
    let (mut ra, mut rb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    let mut gs = Vec::with_capacity(2000);
    for _ in 0..2000 {
        ra.iter_mut().for_each(|v| *v = a[rng.below(a.len())]);
        rb.iter_mut().for_each(|v| *v = b[rng.below(b.len())]);
        let x = hedges_g(&ra, &rb);
        if x.is_finite() {
            gs.push(x);
        }
    }
    let lo = super::percentile(&mut gs, 2.5);
    let hi = super::percentile(&mut gs, 97.5);
    (g, (lo, hi))
}

fn drift_table(images: &[ImageRow], columns: &[Column], groups: &[String], thr: f64) -> Vec<Drift> {
    let mut out = Vec::new();
    if groups.len() < 2 {
        return out;
    }
    let compared = if groups.len() == 2 { 1 } else { groups.len() };
    for (gi, g) in groups.iter().enumerate().take(compared) {
        let against = if groups.len() == 2 {
            groups[1].clone()
        } else {
            "all other images".to_string()
        };
        for (c, col) in columns.iter().enumerate() {
            let pick = |inside: bool| -> Vec<f64> {
                images
                    .iter()
                    .filter(|r| r.status == "ok" && r.reasons.is_empty())
                    .filter(|r| (&r.group == g) == inside)
                    .map(|r| col.scaled(r.values[c]))
                    .filter(|v| v.is_finite())
                    .collect()
            };
            let (a, b) = (pick(true), pick(false));
            let seed = 0x5eed_0000 + (gi * 1000 + c) as u64;
            let (g_val, ci) = g_with_ci(&a, &b, seed);
            if g_val.is_nan() {
                continue;
            }
            out.push(Drift {
                group: g.clone(),
                against: against.clone(),
                measure: col.name.clone(),
                n: (a.len(), b.len()),
                g: g_val,
                ci,
                flagged: ci.0 > thr || ci.1 < -thr,
            });
        }
    }
    out
}

fn confounding(images: &[ImageRow], groups: &[String], map_path: &Path) -> Result<Confounding> {
    let map = PlateMap::read(map_path)?;
    if !map.columns.iter().any(|c| c == "treatment") {
        return Err(Error::invalid(format!(
            "plate map {}: needs the columns well and treatment (found: well, {})",
            map_path.display(),
            map.columns.join(", ")
        )));
    }
    let mut treatments: Vec<String> = Vec::new();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for im in images.iter().filter(|r| r.status == "ok") {
        let Some(well) = im.fields.get("well") else {
            return Err(Error::invalid(format!(
                "a plate map needs each image's well: add a {{well}} field to --pattern or a well column to --sidecar ({} has none)",
                im.file
            )));
        };
        let plate = im.fields.get("plate").map(String::as_str).unwrap_or("");
        let Some(t) = map.treatment(plate, well) else {
            continue;
        };
        let t = &t;
        if !treatments.contains(t) {
            treatments.push(t.clone());
        }
        *counts.entry((t.clone(), im.group.clone())).or_default() += 1;
    }
    treatments.sort();
    let table: Vec<Vec<usize>> = treatments
        .iter()
        .map(|t| {
            groups
                .iter()
                .map(|g| counts.get(&(t.clone(), g.clone())).copied().unwrap_or(0))
                .collect()
        })
        .collect();
    let v = cramers_v(&table);
    Ok(Confounding {
        treatments,
        groups: groups.to_vec(),
        counts: table,
        cramers_v: v,
        flagged: v >= 0.5,
    })
}

/// Cramér's V of a contingency table (NaN when it has fewer than 2 non-empty rows or columns).
fn cramers_v(t: &[Vec<usize>]) -> f64 {
    let rows: Vec<f64> = t.iter().map(|r| r.iter().sum::<usize>() as f64).collect();
    let ncols = t.first().map_or(0, Vec::len);
    let cols: Vec<f64> = (0..ncols)
        .map(|j| t.iter().map(|r| r[j]).sum::<usize>() as f64)
        .collect();
    let n: f64 = rows.iter().sum();
    let r = rows.iter().filter(|&&x| x > 0.0).count();
    let c = cols.iter().filter(|&&x| x > 0.0).count();
    if r < 2 || c < 2 || n == 0.0 {
        return f64::NAN;
    }
    let mut chi2 = 0.0;
    for (i, row) in t.iter().enumerate() {
        for (j, &o) in row.iter().enumerate() {
            let e = rows[i] * cols[j] / n;
            if e > 0.0 {
                chi2 += (o as f64 - e).powi(2) / e;
            }
        }
    }
    (chi2 / (n * (r.min(c) - 1) as f64)).sqrt()
}

// ------------------------------------------------------------------------------------------
// Fields from paths and sidecars

/// The named fields of `path` under `pattern`, or `None` when it does not match. The pattern
/// matches the end of the path (`\` read as `/`), starting at a folder boundary.
pub fn match_pattern(pattern: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let path = path.replace('\\', "/");
    let pat = tokens(pattern);
    let p: Vec<char> = path.chars().collect();
    for start in 0..=p.len() {
        if start > 0 && p[start - 1] != '/' {
            continue;
        }
        let mut fields = Vec::new();
        if matches(&pat, &p[start..], &mut fields) {
            return Some(fields.into_iter().collect());
        }
    }
    None
}

#[derive(Debug)]
enum Tok {
    Lit(char),
    Field(String),
    Star,
    DoubleStar,
}

fn tokens(pattern: &str) -> Vec<Tok> {
    let c: Vec<char> = pattern.replace('\\', "/").chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '{' => {
                if let Some(end) = c[i..].iter().position(|&x| x == '}') {
                    out.push(Tok::Field(c[i + 1..i + end].iter().collect()));
                    i += end + 1;
                    continue;
                }
                out.push(Tok::Lit('{'));
            }
            '*' if c.get(i + 1) == Some(&'*') => {
                out.push(Tok::DoubleStar);
                i += 2;
                if c.get(i) == Some(&'/') {
                    i += 1;
                }
                continue;
            }
            '*' => out.push(Tok::Star),
            ch => out.push(Tok::Lit(ch)),
        }
        i += 1;
    }
    out
}

fn matches(pat: &[Tok], s: &[char], fields: &mut Vec<(String, String)>) -> bool {
    let Some(first) = pat.first() else {
        return s.is_empty();
    };
    match first {
        Tok::Lit(c) => s.first() == Some(c) && matches(&pat[1..], &s[1..], fields),
        Tok::Star => (0..=s.len())
            .take_while(|&k| k == 0 || s[k - 1] != '/')
            .any(|k| matches(&pat[1..], &s[k..], fields)),
        Tok::DoubleStar => (0..=s.len())
            .filter(|&k| k == 0 || s[k - 1] == '/')
            .any(|k| matches(&pat[1..], &s[k..], fields)),
        Tok::Field(name) => {
            for k in 1..=s.len() {
                if s[k - 1] == '/' {
                    break;
                }
                let n = fields.len();
                fields.push((name.clone(), s[..k].iter().collect()));
                if matches(&pat[1..], &s[k..], fields) {
                    return true;
                }
                fields.truncate(n);
            }
            false
        }
    }
}

/// The fields of the image `file`: `date` and `instrument` from its own header
/// ([`crate::io::tiff::acquisition_metadata`]; with a pattern or sidecar only those that
/// `group_by` names), then those of `pattern` (an error when the path does not match it), then
/// those of its `sidecar` row (an error when it has none); later sources override earlier ones.
pub fn image_fields(
    file: &str,
    pattern: Option<&str>,
    sidecar: Option<&Sidecar>,
    group_by: &[String],
) -> Result<BTreeMap<String, String>> {
    let mut fields = crate::io::tiff::acquisition_metadata(Path::new(file));
    if pattern.is_some() || sidecar.is_some() {
        fields.retain(|k, _| group_by.contains(k));
    }
    if let Some(p) = pattern {
        match match_pattern(p, file) {
            Some(f) => fields.extend(f),
            None => {
                return Err(Error::invalid(format!(
                    "{file} does not match the pattern {p:?}"
                )));
            }
        }
    }
    if let Some(sc) = sidecar {
        fields.extend(sc.fields_of(file)?);
    }
    Ok(fields)
}

/// The fields that form the groups: `requested` when given (each must be among `found`, the
/// fields the images have, or the error names the ones there are), else every field found
/// except those that locate an image within a group (well, row, column, site, field, channel).
pub fn group_fields(requested: &[String], found: &BTreeSet<String>) -> Result<Vec<String>> {
    if requested.is_empty() {
        return Ok(found
            .iter()
            .filter(|f| !POSITION_FIELDS.contains(&f.as_str()))
            .cloned()
            .collect());
    }
    for g in requested {
        if !found.contains(g) {
            return Err(Error::invalid(format!(
                "group field {g:?} is not among the fields found ({}): give it with --pattern or --sidecar",
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            )));
        }
    }
    Ok(requested.to_vec())
}

/// The group of an image with `fields`: the values of the `group_by` fields joined by " / "
/// ("?" for a missing one), or "all" without group fields.
pub fn group_name(fields: &BTreeMap<String, String>, group_by: &[String]) -> String {
    if group_by.is_empty() {
        return "all".into();
    }
    group_by
        .iter()
        .map(|g| fields.get(g).map(String::as_str).unwrap_or("?"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A sidecar CSV giving each image's fields (see the module documentation).
#[derive(Debug, Clone)]
pub struct Sidecar {
    path: PathBuf,
    names: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
}

/// Reads a sidecar CSV: a `file` column, then one column per field.
pub fn read_sidecar(path: &Path) -> Result<Sidecar> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let rows = parse_csv(&text);
    let header = rows.first().cloned().unwrap_or_default();
    let Some(fc) = header.iter().position(|h| h.trim() == "file") else {
        return Err(Error::invalid(format!(
            "sidecar {}: needs a file column (found: {})",
            path.display(),
            header.join(", ")
        )));
    };
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != fc)
        .map(|(_, h)| h.trim().to_string())
        .collect();
    let body = rows
        .iter()
        .skip(1)
        .filter(|r| r.len() > fc && !r[fc].trim().is_empty())
        .map(|r| {
            let vals = (0..header.len())
                .filter(|&i| i != fc)
                .map(|i| r.get(i).map(|s| s.trim().to_string()).unwrap_or_default())
                .collect();
            (r[fc].trim().replace('\\', "/"), vals)
        })
        .collect();
    Ok(Sidecar {
        path: path.to_path_buf(),
        names,
        rows: body,
    })
}

impl Sidecar {
    /// The fields of `file`: from the one row whose `file` equals the path or its end; an
    /// error when none or several match.
    pub fn fields_of(&self, file: &str) -> Result<BTreeMap<String, String>> {
        let f = file.replace('\\', "/");
        let hits: Vec<&(String, Vec<String>)> = self
            .rows
            .iter()
            .filter(|(k, _)| f == *k || f.ends_with(&format!("/{k}")))
            .collect();
        match hits.as_slice() {
            [] => Err(Error::invalid(format!(
                "{file} has no row in the sidecar {}",
                self.path.display()
            ))),
            [(_, vals)] => Ok(self
                .names
                .iter()
                .cloned()
                .zip(vals.iter().cloned())
                .collect()),
            _ => Err(Error::invalid(format!(
                "{file} matches {} rows of the sidecar {}: give longer paths in its file column",
                hits.len(),
                self.path.display()
            ))),
        }
    }
}

/// RFC 4180 CSV (quoted fields with doubled quotes, CRLF or LF) → rows of fields.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

// ------------------------------------------------------------------------------------------
// Tables

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

fn images_csv(images: &[ImageRow], columns: &[Column]) -> String {
    let mut s = String::from("file,status,group");
    let all_fields: BTreeSet<&String> = images.iter().flat_map(|r| r.fields.keys()).collect();
    for f in &all_fields {
        s += &format!(",{}", csv_field(f));
    }
    s += ",flagged,reasons";
    for c in columns {
        s += &format!(",{},{}_z", c.name, c.name);
    }
    s.push('\n');
    for r in images {
        s += &format!(
            "{},{},{}",
            csv_field(&r.file),
            r.status,
            csv_field(&r.group)
        );
        for f in &all_fields {
            s += &format!(
                ",{}",
                csv_field(r.fields.get(*f).map(String::as_str).unwrap_or(""))
            );
        }
        s += &format!(
            ",{},{}",
            !r.reasons.is_empty(),
            csv_field(&r.reasons.join("; "))
        );
        for (v, z) in r.values.iter().zip(&r.z) {
            let num = |x: f64| {
                if x.is_finite() {
                    format!("{x}")
                } else {
                    String::new()
                }
            };
            s += &format!(",{},{}", num(*v), num(*z));
        }
        s.push('\n');
    }
    s
}

fn drift_csv(d: &[Drift]) -> String {
    let mut s =
        String::from("group,against,measure,n_group,n_against,hedges_g,ci_low,ci_high,flagged\n");
    for r in d {
        s += &format!(
            "{},{},{},{},{},{},{},{},{}\n",
            csv_field(&r.group),
            csv_field(&r.against),
            r.measure,
            r.n.0,
            r.n.1,
            r.g,
            r.ci.0,
            r.ci.1,
            r.flagged
        );
    }
    s
}

fn confounding_csv(c: &Confounding) -> String {
    let mut s = String::from("treatment");
    for g in &c.groups {
        s += &format!(",{}", csv_field(g));
    }
    s.push('\n');
    for (t, row) in c.treatments.iter().zip(&c.counts) {
        s += &csv_field(t);
        for n in row {
            s += &format!(",{n}");
        }
        s.push('\n');
    }
    s += &format!("cramers_v,{}\n", c.cramers_v);
    s
}

// ------------------------------------------------------------------------------------------
// HTML

const GROUP_COLOURS: &[&str] = &[
    "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#000000",
];

fn render_html(
    out: &Path,
    run: &serde_json::Value,
    rep: &QcReport,
    columns: &[Column],
    opts: &QcOptions,
) -> String {
    let ok = rep.images.iter().filter(|r| r.status == "ok").count();
    let flagged: Vec<&ImageRow> = rep.flagged().collect();
    let drifting: Vec<&Drift> = rep.drift.iter().filter(|d| d.flagged).collect();
    let model = run
        .pointer("/model/name")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    let version = run
        .pointer("/model/version")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    let mut h = html_head(
        "cytoseg QC report",
        ".thumbs{display:flex;flex-wrap:wrap;gap:12px}.thumb{width:260px;font-size:.8em;word-break:break-all}\
         .thumb img{width:256px;image-rendering:pixelated;border:1px solid #999}\
         .plots{display:flex;flex-wrap:wrap;gap:16px}.plot{font-size:.8em}",
    );
    let _ = writeln!(h, "<h1>cytoseg QC report</h1>");
    let _ = writeln!(
        h,
        "<p>Run <code>{}</code>, model <b>{}</b> {}, cytoseg {}. {} images analysed ({} in the run), {} group(s).</p>",
        esc(&out.display().to_string()),
        esc(model),
        esc(version),
        env!("CARGO_PKG_VERSION"),
        ok,
        rep.images.len(),
        rep.groups.len()
    );
    let verdict_flag = if flagged.is_empty() {
        "<span class=\"good\">no image flagged</span>".to_string()
    } else {
        format!(
            "<span class=\"bad\">{} image(s) flagged</span>",
            flagged.len()
        )
    };
    let verdict_drift = if rep.groups.len() < 2 {
        "drift not checked (one group)".to_string()
    } else if drifting.is_empty() {
        "<span class=\"good\">no drift between groups</span>".to_string()
    } else {
        format!(
            "<span class=\"bad\">drift on {} group/measure pair(s)</span>",
            drifting.len()
        )
    };
    let verdict_conf = match &rep.confounding {
        None => "no plate map given".to_string(),
        Some(c) if c.flagged => format!(
            "<span class=\"bad\">treatments confounded with groups (Cramér's V {:.2})</span>",
            c.cramers_v
        ),
        Some(c) => format!(
            "<span class=\"good\">treatments spread over groups (Cramér's V {})</span>",
            if c.cramers_v.is_finite() {
                format!("{:.2}", c.cramers_v)
            } else {
                "undefined".into()
            }
        ),
    };
    let _ = writeln!(
        h,
        "<ul><li>{verdict_flag}</li><li>{verdict_drift}</li><li>{verdict_conf}</li></ul>"
    );
    let failed: Vec<&ImageRow> = rep
        .images
        .iter()
        .filter(|r| r.status != "ok" && r.status != "skipped")
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"bad\">{} image(s) not analysed (failed or cancelled in the run): see summary.csv.</p>",
            failed.len()
        );
    }

    // Flagged images.
    h += "<h2>Flagged images</h2>\n";
    if flagged.is_empty() {
        h += "<p>None: every image is within its group's range on every judged measure.</p>\n";
    } else {
        let _ = writeln!(
            h,
            "<p class=\"note\">Robust z-score beyond ±{} in the measure's bad direction (and at least its minimum change), within the image's group; outlines of the objects found in yellow. Most deviant first{}.</p>",
            opts.z,
            if flagged.len() > opts.thumbnails {
                format!("; thumbnails for the first {}", opts.thumbnails)
            } else {
                String::new()
            }
        );
        let mut order: Vec<&ImageRow> = flagged.clone();
        order.sort_by(|a, b| severity(b).total_cmp(&severity(a)));
        h += "<div class=\"thumbs\">\n";
        for (k, r) in order.iter().enumerate() {
            let img = if k < opts.thumbnails {
                thumbnail(out, run, r)
            } else {
                None
            };
            let _ = write!(h, "<div class=\"thumb\">");
            match img {
                Some(png) => {
                    h += &png_img_tag(&r.file, &png);
                }
                None => {
                    h += "<div class=\"note\">(no thumbnail: the image or its labels could not be read)</div>"
                }
            }
            let _ = writeln!(
                h,
                "<div><b>{}</b><br>group {}<br><span class=\"bad\">{}</span></div></div>",
                esc(&r.file),
                esc(&r.group),
                r.reasons
                    .iter()
                    .map(|s| esc(s))
                    .collect::<Vec<_>>()
                    .join("<br>")
            );
        }
        h += "</div>\n";
    }

    // Drift.
    h += "<h2>Drift between groups</h2>\n";
    if rep.groups.len() < 2 {
        h += "<p>One group only. Give groups with <code>--pattern</code> (e.g. <code>'{instrument}/{date}/*'</code>) or <code>--sidecar</code> to compare instruments, days or plates.</p>\n";
    } else {
        let _ = writeln!(
            h,
            "<p class=\"note\">Hedges' g of each group against {} (flagged images set aside; on the compared scale: logarithmic for intensities, counts and focus), with a 95% bootstrap interval. Flagged where the whole interval lies beyond ±{}.</p>",
            if rep.groups.len() == 2 {
                "the other"
            } else {
                "all other images"
            },
            opts.drift
        );
        h += "<table><tr><th>group</th><th>against</th><th>measure</th><th>n</th><th>g</th><th>95% interval</th><th></th></tr>\n";
        let mut rows: Vec<&Drift> = rep.drift.iter().collect();
        rows.sort_by(|a, b| {
            b.flagged
                .cmp(&a.flagged)
                .then(b.g.abs().total_cmp(&a.g.abs()))
        });
        for d in rows {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} vs {}</td><td>{:.2}</td><td>[{:.2}, {:.2}]</td><td>{}</td></tr>",
                esc(&d.group),
                esc(&d.against),
                d.measure,
                d.n.0,
                d.n.1,
                d.g,
                d.ci.0,
                d.ci.1,
                if d.flagged {
                    "<span class=\"bad\">drift</span>"
                } else {
                    ""
                }
            );
        }
        h += "</table>\n";
    }

    // Confounding.
    if let Some(c) = &rep.confounding {
        h += "<h2>Treatments against acquisition groups</h2>\n";
        let _ = writeln!(
            h,
            "<p class=\"note\">Images per treatment (plate map) and group. Cramér's V {}: {}.</p>",
            fmt_num(c.cramers_v),
            if c.flagged {
                "<span class=\"bad\">treatments are largely imaged in their own groups, so differences between treatments may be the groups' (instrument, day, plate)</span>"
            } else {
                "treatments are spread over the groups"
            }
        );
        h += "<table><tr><th>treatment</th>";
        for g in &c.groups {
            let _ = write!(h, "<th>{}</th>", esc(g));
        }
        h += "</tr>\n";
        for (t, row) in c.treatments.iter().zip(&c.counts) {
            let _ = write!(h, "<tr><td>{}</td>", esc(t));
            for n in row {
                let _ = write!(h, "<td>{n}</td>");
            }
            h += "</tr>\n";
        }
        h += "</table>\n";
    }

    // Distributions.
    h += "<h2>Distributions by group</h2>\n<p class=\"note\">Each dot an image (red: flagged; hover for the file); bar: the group's median.</p>\n<div class=\"plots\">\n";
    for (c, col) in columns.iter().enumerate() {
        h += &strip_plot(rep, col, c);
    }
    h += "</div>\n";

    // Definitions.
    h += "<h2>Measures</h2>\n<table><tr><th>measure</th><th>definition</th><th>judged</th></tr>\n";
    for col in columns {
        let judged = if col.flags {
            match col.bad {
                Bad::Low => "flags when low",
                Bad::High => "flags when high",
                Bad::Both => "flags either way",
            }
        } else {
            "shown only"
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{judged}</td></tr>",
            col.name,
            esc(&col.formula)
        );
    }
    h += "</table>\n<p class=\"note\">Generated by <code>cytoseg qc</code>. Tables: qc_images.csv, qc_drift.csv";
    if rep.confounding.is_some() {
        h += ", qc_confounding.csv";
    }
    h += ".</p>\n</body></html>\n";
    h
}

fn severity(r: &ImageRow) -> f64 {
    if r.objects == 0.0 {
        return f64::INFINITY;
    }
    r.z.iter()
        .filter(|z| z.is_finite())
        .map(|z| z.abs())
        .fold(0.0, f64::max)
        + r.reasons.len() as f64
}

fn strip_plot(rep: &QcReport, col: &Column, c: usize) -> String {
    let (w_per, pad_l, pad_b, pad_t, height) = (90.0, 64.0, 56.0, 24.0, 240.0);
    let ng = rep.groups.len().max(1);
    let width = pad_l + w_per * ng as f64 + 12.0;
    let pts: Vec<(usize, f64, &ImageRow)> = rep
        .images
        .iter()
        .filter(|r| r.status == "ok")
        .filter_map(|r| {
            let t = col.scaled(r.values[c]);
            let g = rep.groups.iter().position(|g| *g == r.group)?;
            t.is_finite().then_some((g, t, r))
        })
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        "<div class=\"plot\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" role=\"img\">",
        height + pad_t + pad_b
    );
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"15\" font-size=\"13\" font-weight=\"600\">{}</text>",
        pad_l, col.name
    );
    if pts.is_empty() {
        s += "<text x=\"70\" y=\"100\" font-size=\"12\">no values</text></svg></div>";
        return s;
    }
    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, hi + 1.0)
    };
    let y = |t: f64| pad_t + height - (t - lo) / (hi - lo) * height;
    let _ = write!(
        s,
        "<line x1=\"{pad_l}\" y1=\"{pad_t}\" x2=\"{pad_l}\" y2=\"{}\" stroke=\"#444\"/>",
        pad_t + height
    );
    for k in 0..=4 {
        let t = lo + (hi - lo) * k as f64 / 4.0;
        let yy = y(t);
        let _ = write!(
            s,
            "<line x1=\"{}\" y1=\"{yy}\" x2=\"{}\" y2=\"{yy}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            pad_l,
            width - 8.0,
            pad_l - 4.0,
            yy + 3.0,
            esc(&fmt_num(col.unscaled(t)))
        );
    }
    for (g, name) in rep.groups.iter().enumerate() {
        let cx = pad_l + w_per * (g as f64 + 0.5);
        let mut vals: Vec<f64> = pts.iter().filter(|p| p.0 == g).map(|p| p.1).collect();
        let m = median(&mut vals);
        let colour = GROUP_COLOURS[g % GROUP_COLOURS.len()];
        for (k, p) in pts.iter().filter(|p| p.0 == g).enumerate() {
            // Deterministic jitter (golden-ratio sequence).
            let jx = ((k as f64 * 0.618_034) % 1.0 - 0.5) * w_per * 0.6;
            let flagged = !p.2.reasons.is_empty();
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"{}\" fill-opacity=\"0.75\"><title>{} = {}</title></circle>",
                cx + jx,
                y(p.1),
                if flagged { 4 } else { 3 },
                if flagged { "#d00" } else { colour },
                esc(&p.2.file),
                esc(&fmt_num(p.2.values[c]))
            );
        }
        if m.is_finite() {
            let _ = write!(
                s,
                "<line x1=\"{}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#000\" stroke-width=\"2\"/>",
                cx - w_per * 0.35,
                y(m),
                cx + w_per * 0.35,
                y(m)
            );
        }
        let label: String = name.chars().take(14).collect();
        let _ = write!(
            s,
            "<text x=\"{cx}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            pad_t + height + 16.0,
            esc(&label)
        );
    }
    s += "</svg></div>\n";
    s
}

/// A ≤256-pixel PNG of the image's QC channel (0.1–99.9 percentile stretch) with the objects'
/// outlines in yellow; `None` when the image or its labels cannot be read.
fn thumbnail(out: &Path, run: &serde_json::Value, r: &ImageRow) -> Option<Vec<u8>> {
    let stack = read_stack(Path::new(&r.file)).ok()?;
    let plane = stack.planes.first()?.view().ok()?;
    let channels = run
        .pointer("/parameters/channels")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|c| c as usize))
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .map(ChannelChoice::Select)
        .unwrap_or(ChannelChoice::Auto);
    let px = super::qc_plane(&plane, &channels);
    let (h, w) = (plane.height, plane.width);
    let labels_file = run
        .get("images")?
        .as_array()?
        .iter()
        .find(|i| i.get("input").and_then(|v| v.as_str()) == Some(&r.file))?
        .get("outputs")?
        .as_object()?
        .keys()
        .find(|k| k.ends_with("_labels.tif"))?
        .clone();
    let (lab, lh, lw) = read_labels(&out.join(labels_file)).ok()?;
    if (lh, lw) != (h, w) || lab.len() < h * w {
        return None;
    }
    let stretch = Stretch::new(&px);
    let step = (h.max(w) as f64 / 256.0).max(1.0);
    let (th, tw) = (((h as f64) / step) as u32, ((w as f64) / step) as u32);
    let mut img = RgbImage::new(tw.max(1), th.max(1));
    for ty in 0..img.height() {
        for tx in 0..img.width() {
            let (y, x) = ((ty as f64 * step) as usize, (tx as f64 * step) as usize);
            let k = y * w + x;
            let l = lab[k];
            let edge = is_outline(&lab, w, h, x, y)
                || (l != 0
                    && step >= 2.0
                    && x + 2 < w
                    && y + 2 < h
                    && (lab[k + 2] != l || lab[k + 2 * w] != l));
            let g = stretch.grey(px[k]);
            img.put_pixel(
                tx,
                ty,
                if edge {
                    Rgb([255, 220, 0])
                } else {
                    Rgb([g, g, g])
                },
            );
        }
    }
    png_bytes(&img).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_json() {
        let o = QcOptions::from_json(
            r#"{"pattern": "{plate}_*.tif", "group_by": "plate, day", "plate_map": "", "z": 2.5}"#,
        )
        .unwrap();
        assert_eq!(o.pattern.as_deref(), Some("{plate}_*.tif"));
        assert_eq!(o.group_by, ["plate", "day"]);
        assert!(o.plate_map.is_none());
        assert_eq!((o.z, o.drift), (2.5, 0.5));
        let o = QcOptions::from_json(r#"{"group_by": ["a", "b,c"], "sidecar": "s.csv"}"#).unwrap();
        assert_eq!(o.group_by, ["a", "b", "c"]);
        assert_eq!(o.sidecar, Some(PathBuf::from("s.csv")));
        assert_eq!(QcOptions::from_json("").unwrap().z, 3.0);
        assert_eq!(QcOptions::from_json("null").unwrap().thumbnails, 30);
        for (bad, says) in [
            (r#"{"groupby": "x"}"#, "groupby"),
            (r#"{"z": -1}"#, "z must be"),
            (r#"{"group_by": 3}"#, "group_by must be"),
            ("[1", "not JSON"),
        ] {
            let e = QcOptions::from_json(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn patterns_capture_named_fields() {
        let f = match_pattern(
            "{instrument}/{date}/*.tif",
            "/data/scopeA/2026-01-02/img_1.tif",
        )
        .unwrap();
        assert_eq!(f["instrument"], "scopeA");
        assert_eq!(f["date"], "2026-01-02");
        let f = match_pattern(
            "{plate}_{well}_s{site}_w{channel}.tif",
            "run/P1_B03_s2_w1.tif",
        )
        .unwrap();
        assert_eq!(
            (f["plate"].as_str(), f["well"].as_str(), f["site"].as_str()),
            ("P1", "B03", "2")
        );
        assert!(match_pattern("{a}/{b}.tif", "x.tif").is_none());
        let f = match_pattern("**/{day}/*.png", "a/b/c/d1/z.png").unwrap();
        assert_eq!(f["day"], "d1");
    }

    #[test]
    fn csv_round_trip_with_quotes() {
        let rows = parse_csv("a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n3,\n");
        assert_eq!(
            rows,
            vec![vec!["a", "b"], vec!["x,1", "say \"hi\""], vec!["3", ""]]
        );
    }

    #[test]
    fn hedges_g_and_bootstrap_interval() {
        let a: Vec<f64> = (0..30).map(|i| i as f64 / 10.0).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 2.0).collect();
        let (g, (lo, hi)) = g_with_ci(&a, &b, 1);
        // Means differ by 2, sd = 0.88: d = -2.27, times J = 0.987.
        assert!((g + 2.24).abs() < 0.02, "{g}");
        assert!(lo < g && g < hi && hi < -1.0, "{lo} {hi}");
        assert!(hedges_g(&[1.0], &b).is_nan());
    }

    #[test]
    fn cramers_v_extremes() {
        assert!((cramers_v(&[vec![10, 0], vec![0, 10]]) - 1.0).abs() < 1e-12);
        assert!(cramers_v(&[vec![5, 5], vec![5, 5]]).abs() < 1e-12);
    }

    /// A run folder with a summary.csv of `n` images per group (same values but for a small
    /// per-image wobble), the inputs as tiny TIFFs carrying `DateTime` tags of their group's
    /// day, named `<well>_<k>.tif`.
    fn synthetic_run(tag: &str, days: &[&str], wells: &[&[&str]]) -> PathBuf {
        use tiff::encoder::{TiffEncoder, colortype};
        use tiff::tags::Tag;
        let dir = std::env::temp_dir().join(format!("cytoseg-qcrep-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        let mut header = String::from("file,status,error,planes,objects,area_median");
        for m in MEASURES {
            header += &format!(",{}", m.name);
        }
        let mut text = header + "\n";
        let mut k = 0;
        for (d, day) in days.iter().enumerate() {
            for well in wells[d] {
                k += 1;
                let path = dir.join("in").join(format!("{well}_{k}.tif"));
                let mut enc = TiffEncoder::new(std::fs::File::create(&path).unwrap()).unwrap();
                let mut img = enc.new_image::<colortype::Gray8>(4, 4).unwrap();
                img.encoder()
                    .write_tag(Tag::DateTime, format!("{day} 10:00:00").as_str())
                    .unwrap();
                img.encoder().write_tag(Tag::Make, "Acme").unwrap();
                img.write_data(&[5u8; 16]).unwrap();
                let wob = 1.0 + 0.01 * (k % 5) as f64;
                text += &format!("{},ok,,1,{},{}", path.display(), 20 + k % 3, 100.0 * wob);
                for m in MEASURES {
                    let base = match m.name {
                        "focus_spectrum_slope" => -3.0,
                        "saturated_fraction" | "flow_qc_removed_fraction" => 0.01,
                        "mean_cellprob" => 0.95,
                        _ => 10.0,
                    };
                    text += &format!(",{}", base * wob);
                }
                text += "\n";
            }
        }
        std::fs::write(dir.join("summary.csv"), text).unwrap();
        dir
    }

    #[test]
    fn groups_come_from_tiff_dates_and_a_plate_map_reveals_confounding() {
        let wells: [&[&str]; 2] = [&["A01", "A02", "A03", "A04"], &["B01", "B02", "B03", "B04"]];
        let dir = synthetic_run("conf", &["2026:01:05", "2026:01:06"], &wells);
        std::fs::write(
            dir.join("map.csv"),
            "well,treatment,control\nA1,DMSO,1\nA2,DMSO,1\nA3,DMSO,yes\nA4,DMSO,true\nB1,drug,0\nB2,drug,\nB3,drug,\nB4,drug,\n",
        )
        .unwrap();
        let opts = QcOptions {
            pattern: Some("{well}_*.tif".into()),
            group_by: vec!["date".into()],
            plate_map: Some(dir.join("map.csv")),
            ..QcOptions::default()
        };
        let r = qc_report(&dir, &opts).unwrap();
        assert_eq!(r.groups, vec!["2026-01-05", "2026-01-06"]);
        let c = r.confounding.as_ref().unwrap();
        assert_eq!(c.treatments, vec!["control (DMSO)", "drug"]);
        assert_eq!(c.counts, vec![vec![4, 0], vec![0, 4]]);
        assert!(c.flagged && (c.cramers_v - 1.0).abs() < 1e-12);
        assert!(r.html.exists() && dir.join("qc/qc_confounding.csv").exists());
        // The same run without a pattern: the TIFF tags alone give the groups.
        let r = qc_report(&dir, &QcOptions::default()).unwrap();
        assert_eq!(r.groups, vec!["2026-01-05 / Acme", "2026-01-06 / Acme"]);
        assert!(r.confounding.is_none());
        // Treatments spread over both days: not confounded.
        std::fs::write(
            dir.join("map.csv"),
            "well,treatment\nA1,DMSO\nA2,drug\nA3,DMSO\nA4,drug\nB1,DMSO\nB2,drug\nB3,DMSO\nB4,drug\n",
        )
        .unwrap();
        let r = qc_report(&dir, &opts).unwrap();
        let c = r.confounding.unwrap();
        assert!(!c.flagged && c.cramers_v.abs() < 1e-12, "{}", c.cramers_v);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_options_name_the_problem() {
        let wells: [&[&str]; 1] = [&["A01", "A02", "A03"]];
        let dir = synthetic_run("bad", &["2026:02:01"], &wells);
        let err = |o: QcOptions| qc_report(&dir, &o).unwrap_err().to_string();
        let e = err(QcOptions {
            pattern: Some("{plate}/{well}_*.png".into()),
            ..QcOptions::default()
        });
        assert!(e.contains("does not match the pattern"), "{e}");
        let e = err(QcOptions {
            group_by: vec!["operator".into()],
            ..QcOptions::default()
        });
        assert!(e.contains("\"operator\"") && e.contains("date"), "{e}");
        let e = err(QcOptions {
            measures: vec!["nope".into()],
            ..QcOptions::default()
        });
        assert!(e.contains("nope") && e.contains("summary.csv"), "{e}");
        std::fs::write(dir.join("map.csv"), "well,compound\n").unwrap();
        let e = err(QcOptions {
            plate_map: Some(dir.join("map.csv")),
            ..QcOptions::default()
        });
        assert!(e.contains("treatment"), "{e}");
        std::fs::write(dir.join("map.csv"), "well,treatment\nA1,x\n").unwrap();
        let e = err(QcOptions {
            plate_map: Some(dir.join("map.csv")),
            ..QcOptions::default()
        });
        assert!(e.contains("{well} field"), "{e}");
        std::fs::write(dir.join("side.csv"), "path,instrument\n").unwrap();
        let e = err(QcOptions {
            sidecar: Some(dir.join("side.csv")),
            ..QcOptions::default()
        });
        assert!(e.contains("file column"), "{e}");
        let e = qc_report(&dir.join("nowhere"), &QcOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("summary.csv"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
