//! The tables and pictures of `cytoseg validate` beyond the scores themselves: scores per
//! group of reference images and per pair of annotators (as text, CSV and JSON rows), the
//! overlay picture of each reference image (its matching drawn by
//! [`crate::metrics::overlay`]), and one self-contained HTML page listing every image worst
//! first with its scores, group and overlay (PNGs embedded as `data:` URIs; nothing fetched).
//!
//! The scores are those of [`crate::metrics`] (stardist's matching): a row's AP is
//! `tp / (tp + fp + fn)` from the counts summed over its images, F1 `2 tp / (2 tp + fp + fn)`,
//! PQ the panoptic quality, each at one IoU threshold.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::image::read_stack;
use crate::io::labels::read_labels;
use crate::measure::csv_field;
use crate::metrics::overlay::{self, stretch_to_grey};
use crate::metrics::{Criterion, DatasetMatchingStats, MatchingStats, aggregate};
use crate::model::ChannelChoice;
use crate::report_util::{esc, html_head, png_bytes, png_img_tag};

/// Two thresholds closer than this are the same threshold.
const SAME_THRESHOLD: f64 = 1e-12;

/// The scores of a set of images: a group, the whole set, or one annotator (or the model)
/// scored against another.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreRow {
    /// What the row is, one value per key column (e.g. `[group]`, or `[reference, compared,
    /// kind]`).
    pub key: Vec<String>,
    /// Number of images scored.
    pub images: usize,
    /// stardist's `matching_dataset` per threshold (from counts summed over the images).
    pub dataset: Vec<DatasetMatchingStats>,
}

impl ScoreRow {
    /// The scores at `thresh`, when it was scored.
    pub fn at(&self, thresh: f64) -> Option<&DatasetMatchingStats> {
        self.dataset
            .iter()
            .find(|d| (d.thresh - thresh).abs() < SAME_THRESHOLD)
    }

    /// The AP at `thresh` (NaN when it was not scored).
    pub fn ap_at(&self, thresh: f64) -> f64 {
        self.at(thresh).map_or(f64::NAN, |d| d.accuracy)
    }

    /// Whether the AP at `thresh` falls short of `bar` (or was not scored).
    pub fn below(&self, thresh: f64, bar: f64) -> bool {
        below_bar(self.ap_at(thresh), bar)
    }

    /// The key joined by " vs " (for messages).
    pub fn label(&self) -> String {
        self.key.join(" vs ")
    }
}

/// Whether `ap` falls short of `bar`; a NaN AP always does.
pub fn below_bar(ap: f64, bar: f64) -> bool {
    !matches!(
        ap.partial_cmp(&bar),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

/// The scores of each group: `groups[i]` is the group of the image scored `per_image[i]`
/// (one [`MatchingStats`] per threshold of `thresholds`). Rows are sorted by group name.
pub fn group_scores(
    groups: &[String],
    per_image: &[Vec<MatchingStats>],
    thresholds: &[f64],
) -> Vec<ScoreRow> {
    let mut by_group: BTreeMap<&str, Vec<Vec<MatchingStats>>> = BTreeMap::new();
    for (g, m) in groups.iter().zip(per_image) {
        by_group.entry(g).or_default().push(m.clone());
    }
    by_group
        .into_iter()
        .map(|(g, images)| ScoreRow {
            key: vec![g.to_string()],
            images: images.len(),
            dataset: aggregate(&images, thresholds, Criterion::Iou, false),
        })
        .collect()
}

/// Names for annotators from their folders: the folder's name; where two share it, the last
/// two path components; where those are shared too, a number is added (`labels (2)`).
pub fn annotator_names(dirs: &[PathBuf]) -> Vec<String> {
    let tail = |p: &Path, n: usize| -> String {
        let parts: Vec<String> = p
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.is_empty() {
            p.display().to_string()
        } else {
            parts[parts.len().saturating_sub(n)..].join("/")
        }
    };
    let mut names: Vec<String> = dirs.iter().map(|d| tail(d, 1)).collect();
    let count = |names: &[String], n: &str| names.iter().filter(|m| *m == n).count();
    let dup: Vec<bool> = names.iter().map(|n| count(&names, n) > 1).collect();
    for (k, d) in dirs.iter().enumerate() {
        if dup[k] {
            names[k] = tail(d, 2);
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let total: Vec<usize> = names.iter().map(|n| count(&names, n)).collect();
    for (k, n) in names.iter_mut().enumerate() {
        if total[k] > 1 {
            let i = seen.entry(n.clone()).or_insert(0);
            *i += 1;
            *n = format!("{n} ({i})");
        }
    }
    names
}

/// CSV of score rows: the key columns named `key_names`, then `images` and one row per
/// threshold with stardist's field names (`accuracy` is the AP).
pub fn scores_csv(key_names: &[&str], rows: &[ScoreRow]) -> String {
    let mut s = format!(
        "{},images,thresh,{}\n",
        key_names.join(","),
        DatasetMatchingStats::CSV_HEADER
    );
    for r in rows {
        let key: Vec<String> = r.key.iter().map(String::as_str).map(csv_field).collect();
        for d in &r.dataset {
            let _ = writeln!(
                s,
                "{},{},{},{}",
                key.join(","),
                r.images,
                d.thresh,
                d.csv_values()
            );
        }
    }
    s
}

/// Columns of the score tables (text and HTML), filled by [`table_cells`].
const TABLE_COLUMNS: [&str; 10] = [
    "n_true",
    "n_pred",
    "tp",
    "fp",
    "fn",
    "AP",
    "F1",
    "PQ",
    "precision",
    "recall",
];

/// The cells of [`TABLE_COLUMNS`]: counts, then ratios to 4 decimals.
fn table_cells(d: &DatasetMatchingStats) -> [String; 10] {
    let f = |v: f64| format!("{v:.4}");
    [
        d.n_true.to_string(),
        d.n_pred.to_string(),
        d.tp.to_string(),
        d.fp.to_string(),
        d.fn_.to_string(),
        f(d.accuracy),
        f(d.f1),
        f(d.panoptic_quality),
        f(d.precision),
        f(d.recall),
    ]
}

/// A text table of score rows at `thresh` (for the terminal): key columns, images, object
/// counts, AP, F1, PQ, precision and recall.
pub fn scores_table(key_names: &[&str], rows: &[ScoreRow], thresh: f64) -> String {
    let widths: Vec<usize> = (0..key_names.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.key.get(i))
                .map(|k| k.chars().count())
                .chain([key_names[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let num_width = |c: &str| c.len().max(7);
    let mut s = String::new();
    for (n, w) in key_names.iter().zip(&widths) {
        let _ = write!(s, "{n:<w$} ");
    }
    let _ = write!(s, "{:>6}", "images");
    for c in TABLE_COLUMNS {
        let _ = write!(s, " {c:>w$}", w = num_width(c));
    }
    s.push('\n');
    for r in rows {
        for (i, w) in widths.iter().enumerate() {
            let _ = write!(s, "{:<w$} ", r.key.get(i).map_or("", String::as_str));
        }
        let _ = write!(s, "{:>6}", r.images);
        match r.at(thresh) {
            Some(d) => {
                for (c, v) in TABLE_COLUMNS.iter().zip(table_cells(d)) {
                    let _ = write!(s, " {v:>w$}", w = num_width(c));
                }
            }
            None => {
                let _ = write!(s, " (not scored at {thresh})");
            }
        }
        s.push('\n');
    }
    s
}

/// The overlay picture (PNG) of one reference image: the image (first plane; the mean of its
/// channels when it has several) contrast-stretched to grey, with the outlines of the matching
/// of `pred` against `truth` at IoU `thresh` (see [`crate::metrics::overlay`]). Errors name the
/// file that cannot be read or whose size differs.
pub fn overlay_png(image: &Path, truth: &Path, pred: &Path, thresh: f64) -> Result<Vec<u8>> {
    let stack = read_stack(image)?;
    let plane = stack
        .planes
        .first()
        .ok_or_else(|| Error::invalid(format!("{}: no image plane", image.display())))?
        .view()?;
    let (h, w) = (plane.height, plane.width);
    let grey = stretch_to_grey(&super::qc_plane(&plane, &ChannelChoice::Auto));
    let (t, th, tw) = read_labels(truth)?;
    let (p, ph, pw) = read_labels(pred)?;
    for (file, (lh, lw), lab) in [(truth, (th, tw), &t), (pred, (ph, pw), &p)] {
        if (lh, lw) != (h, w) || lab.len() != h * w {
            return Err(Error::shape(format!(
                "{} is {lh}×{lw} but the image {} is {h}×{w} (first plane)",
                file.display(),
                image.display()
            )));
        }
    }
    let (img, _) = overlay::overlay(&grey, w, h, &t, &p, thresh)?;
    png_bytes(&img)
}

/// One reference image on the HTML page.
#[derive(Debug, Clone)]
pub struct PageImage {
    /// The image's name (its stem, relative to the images folder).
    pub name: String,
    /// Its group, with grouping.
    pub group: Option<String>,
    /// Its scores at the page's threshold.
    pub stats: MatchingStats,
    /// Its overlay (PNG), when one was drawn.
    pub overlay: Option<Vec<u8>>,
}

/// Everything the HTML page of a validation shows.
#[derive(Debug, Clone)]
pub struct ValidationPage<'a> {
    /// The model, as "name version".
    pub model: String,
    /// Whether the gate passed.
    pub passed: bool,
    /// The verdict line.
    pub verdict: &'a str,
    /// IoU threshold of the gate (and of the per-image scores and overlays).
    pub threshold: f64,
    /// The bar.
    pub min_ap: f64,
    /// The whole set's scores.
    pub whole: &'a ScoreRow,
    /// The images (any order: the page lists them worst first).
    pub images: Vec<PageImage>,
    /// Per-group rows (empty without grouping).
    pub groups: &'a [ScoreRow],
    /// Annotator rows `[reference, compared, kind]` (empty with one annotator).
    pub annotators: &'a [ScoreRow],
    /// Images that failed to segment: (input, error).
    pub failed: &'a [(String, String)],
}

/// Orders images worst first: by AP at the threshold, then F1, then name.
pub fn worst_first(images: &mut [PageImage]) {
    images.sort_by(|a, b| {
        a.stats
            .accuracy
            .total_cmp(&b.stats.accuracy)
            .then(a.stats.f1.total_cmp(&b.stats.f1))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// An HTML table: the `head` columns, then [`TABLE_COLUMNS`]; each row gives its `head` cells
/// (escaped here), its scores, and whether its AP is below the bar (shown in red).
fn html_table<'a>(
    h: &mut String,
    head: &[&str],
    rows: impl Iterator<Item = (Vec<String>, Option<&'a DatasetMatchingStats>, bool)>,
) {
    *h += "<table><tr>";
    for n in head.iter().chain(&TABLE_COLUMNS) {
        let _ = write!(h, "<th>{}</th>", esc(n));
    }
    *h += "</tr>\n";
    for (key, d, below) in rows {
        *h += "<tr>";
        for k in &key {
            let _ = write!(h, "<td>{}</td>", esc(k));
        }
        match d {
            Some(d) => {
                for (c, v) in TABLE_COLUMNS.iter().zip(table_cells(d)) {
                    let bad = below && *c == "AP";
                    let _ = write!(h, "<td{}>{v}</td>", if bad { " class=\"bad\"" } else { "" });
                }
            }
            None => {
                let _ = write!(h, "<td colspan=\"{}\">not scored</td>", TABLE_COLUMNS.len());
            }
        }
        *h += "</tr>\n";
    }
    *h += "</table>\n";
}

/// [`html_table`] of score rows at `thresh` (key columns, then images).
fn html_scores_table(
    h: &mut String,
    key_names: &[&str],
    rows: &[ScoreRow],
    thresh: f64,
    bar: Option<f64>,
) {
    let head: Vec<&str> = key_names.iter().copied().chain(["images"]).collect();
    html_table(
        h,
        &head,
        rows.iter().map(|r| {
            let mut key = r.key.clone();
            key.push(r.images.to_string());
            let below = bar.is_some_and(|b| r.below(thresh, b));
            (key, r.at(thresh), below)
        }),
    );
}

/// The self-contained HTML page of a validation: verdict, scores of the whole set at every
/// threshold, per-group and per-annotator tables, then every image worst first (AP at the
/// threshold, then F1) with its scores, group and overlay.
pub fn render_html(page: &ValidationPage<'_>) -> String {
    let mut images = page.images.clone();
    worst_first(&mut images);
    let mut h = String::new();
    h += &html_head(
        "cytoseg validation",
        ".card{margin:16px 0;padding:8px;border:1px solid #ddd}.card img{max-width:100%;image-rendering:pixelated;border:1px solid #999}\
         .sw{display:inline-block;width:1em;height:1em;vertical-align:middle;border:1px solid #555;margin:0 4px}",
    );
    h += "<h1>cytoseg validation</h1>\n";
    let _ = writeln!(
        h,
        "<p class=\"{}\">{}</p>\n<p>Model <b>{}</b>, cytoseg {}. Gate: AP at IoU {} ≥ {} for the whole set{}.</p>",
        if page.passed { "good" } else { "bad" },
        esc(page.verdict),
        esc(&page.model),
        crate::VERSION,
        page.threshold,
        page.min_ap,
        if page.groups.is_empty() {
            ""
        } else {
            " and for every group"
        }
    );
    h += "<h2>Whole set</h2>\n<p class=\"note\">AP = tp / (tp + fp + fn), F1 = 2 tp / (2 tp + fp + fn), PQ = panoptic quality; counts summed over the images (stardist's matching_dataset).</p>\n";
    html_table(
        &mut h,
        &["IoU"],
        page.whole
            .dataset
            .iter()
            .map(|d| (vec![d.thresh.to_string()], Some(d), false)),
    );
    if !page.groups.is_empty() {
        let _ = writeln!(
            h,
            "<h2>Groups</h2>\n<p class=\"note\">At IoU {}; AP below the bar in red.</p>",
            page.threshold
        );
        html_scores_table(
            &mut h,
            &["group"],
            page.groups,
            page.threshold,
            Some(page.min_ap),
        );
    }
    if !page.annotators.is_empty() {
        let _ = writeln!(
            h,
            "<h2>Annotators</h2>\n<p class=\"note\">At IoU {}. Each annotator scored against each other on the images both labelled (the agreement between people: the ceiling a method can be expected to reach), and the model against each annotator.</p>",
            page.threshold
        );
        html_scores_table(
            &mut h,
            &["reference", "compared", "kind"],
            page.annotators,
            page.threshold,
            None,
        );
    }
    if !page.failed.is_empty() {
        h += "<h2>Failed images</h2>\n<ul>\n";
        for (input, err) in page.failed {
            let _ = writeln!(h, "<li><b>{}</b>: {}</li>", esc(input), esc(err));
        }
        h += "</ul>\n";
    }
    let _ = writeln!(
        h,
        "<h2>Images, worst first</h2>\n<p class=\"note\">Ordered by AP at IoU {}, then F1. Outlines: <span class=\"sw\" style=\"background:{}\"></span>matched prediction (true positive), <span class=\"sw\" style=\"background:{}\"></span>unmatched prediction (false positive), <span class=\"sw\" style=\"background:{}\"></span>unmatched true object (false negative). Image contrast-stretched (0.1–99.9 percentile).</p>",
        page.threshold,
        css(overlay::TP_COLOUR),
        css(overlay::FP_COLOUR),
        css(overlay::FN_COLOUR)
    );
    for im in &images {
        let s = &im.stats;
        let _ = writeln!(
            h,
            "<div class=\"card\"><div><b>{}</b>{} — AP {:.4}, F1 {:.4}, PQ {:.4}; {} true, {} predicted: tp {}, fp {}, fn {}</div>",
            esc(&im.name),
            im.group
                .as_ref()
                .map(|g| format!(", group <b>{}</b>", esc(g)))
                .unwrap_or_default(),
            s.accuracy,
            s.f1,
            s.panoptic_quality,
            s.n_true,
            s.n_pred,
            s.tp,
            s.fp,
            s.fn_
        );
        match &im.overlay {
            Some(png) => h += &png_img_tag(&im.name, png),
            None => h += "<div class=\"note\">(no overlay)</div>",
        }
        h += "</div>\n";
    }
    h += "</body></html>\n";
    h
}

fn css(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::matching;

    fn stats(t: &[u32], p: &[u32]) -> Vec<MatchingStats> {
        matching(t, p, &[0.5], Criterion::Iou, false).unwrap()
    }

    #[test]
    fn groups_add_up_to_the_whole() {
        let per_image = vec![
            stats(&[1, 1, 2, 2], &[1, 1, 0, 0]),
            stats(&[1, 1, 0, 0], &[1, 1, 0, 0]),
            stats(&[1, 0, 2, 0], &[0, 0, 0, 3]),
        ];
        let groups = vec!["b".to_string(), "a".to_string(), "b".to_string()];
        let rows = group_scores(&groups, &per_image, &[0.5]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].key[0].as_str(), rows[0].images), ("a", 1));
        assert_eq!(rows[0].ap_at(0.5), 1.0);
        let b = rows[1].at(0.5).unwrap();
        assert_eq!((b.n_true, b.n_pred, b.tp, b.fp, b.fn_), (4, 2, 1, 1, 3));
        assert!(rows[1].ap_at(0.7).is_nan());
        assert!(rows[1].below(0.7, 0.0) && !rows[0].below(0.5, 1.0) && rows[1].below(0.5, 0.5));
        let csv = scores_csv(&["group"], &rows);
        assert!(csv.starts_with("group,images,thresh,"));
        assert!(csv.contains("\nb,2,0.5,4,2,1,1,3,"), "{csv}");
        let table = scores_table(&["group"], &rows, 0.5);
        assert_eq!(table.lines().count(), 3);
    }

    #[test]
    fn annotators_are_named_by_folder_and_told_apart() {
        let n = annotator_names(&[
            PathBuf::from("/d/alice"),
            PathBuf::from("x/labels"),
            PathBuf::from("y/labels"),
            PathBuf::from("z/y/labels"),
        ]);
        assert_eq!(n, ["alice", "x/labels", "y/labels (1)", "y/labels (2)"]);
    }

    #[test]
    fn page_lists_images_worst_first() {
        let whole = ScoreRow {
            key: vec!["(all)".into()],
            images: 2,
            dataset: aggregate(
                &[stats(&[1, 1], &[1, 1]), stats(&[1, 1], &[0, 0])],
                &[0.5],
                Criterion::Iou,
                false,
            ),
        };
        let img = |name: &str, t: &[u32], p: &[u32]| PageImage {
            name: name.into(),
            group: Some("g<1>".into()),
            stats: stats(t, p).remove(0),
            overlay: Some(vec![1, 2, 3]),
        };
        let page = ValidationPage {
            model: "m 1".into(),
            passed: false,
            verdict: "FAIL: x",
            threshold: 0.5,
            min_ap: 0.8,
            whole: &whole,
            images: vec![img("good", &[1, 1], &[1, 1]), img("bad", &[1, 1], &[0, 0])],
            groups: std::slice::from_ref(&whole),
            annotators: &[],
            failed: &[],
        };
        let h = render_html(&page);
        let (bad, good) = (
            h.find("<b>bad</b>").unwrap(),
            h.find("<b>good</b>").unwrap(),
        );
        assert!(bad < good);
        assert!(h.contains("group <b>g&lt;1&gt;</b>"));
        assert!(h.contains("data:image/png;base64,AQID"));
        assert!(!h.contains("http"));
    }
}
