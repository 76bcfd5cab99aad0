//! Per-object phenotype classifier: a forest of decision trees trained on user-labelled objects
//! of a `cytoseg segment` output folder, applied to every object of such a folder.
//!
//! **Features** of an object: every numeric measurement column of its `<stem>_objects.csv`
//! (area, shape, per-channel intensity; not identity or position: label, plate, well, row,
//! column, site, t, z, centroid, bbox, orientation, nor earlier class columns), then its
//! texture on every channel ([`crate::measure::texture`]), computed from `<stem>_labels.tif` and
//! the input image named in the run record (`.cytoseg/<stem>.json`).
//!
//! **Training labels**: a CSV with columns `image,label,class`; `image` is the output stem
//! (`sub/x` for `OUT/sub/x_objects.csv`), the input path as the run recorded it, or the input's
//! file name with or without its extension (when unique); `label` the object's label.
//!
//! **Validation**: stratified k-fold cross-validation (folds drawn with the seed) gives the
//! accuracy and confusion matrix; the final forest, grown on all labelled objects, adds its
//! out-of-bag accuracy.
//!
//! **Model file** (JSON, [`FORMAT`] version [`FORMAT_VERSION`]): cytoseg version, feature names
//! in order, class names, the SHA-256 of the labels CSV and of every objects table used, the
//! validation numbers and the forest. Applying checks that each table has every feature.
//!
//! **In memory** ([`train_images`], [`classify_image`]): the same features, validation and
//! model file from images and label images a host holds, with objects picked by the user.
//!
//! **Applying** adds `class`, `class_probability` and `probability_<class>` columns to every
//! objects table (replacing earlier ones, so it can be re-run; written atomically). Objects
//! with a non-finite feature get an empty class and NaN probabilities. With `OUT/wells.csv`,
//! [`crate::screen::classes`] adds the per-well fraction of each class.

pub mod forest;
mod memory;
mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::sha256_file;
use crate::error::{Error, Result};
use crate::io::image::Stack;
use crate::measure::csv_field;
use crate::measure::texture::texture;
use crate::qc::report::parse_csv;
use forest::{Forest, SplitMix, best};
pub use memory::{LabelledImage, ObjectClass, Pick, classify_image, train_images};
pub use report::{confusion_csv, confusion_svg, confusion_text};

/// `format` of a model file.
pub const FORMAT: &str = "cytoseg-classifier";
/// Version of the model file layout; loading refuses any other.
pub const FORMAT_VERSION: u32 = 1;
/// Suffix of the objects tables of a segment output.
pub const OBJECTS_SUFFIX: &str = "_objects.csv";

/// Objects-table columns that are identity, position or earlier classification: never features.
const NOT_FEATURES: &[&str] = &[
    "plate",
    "well",
    "row",
    "column",
    "site",
    "label",
    "t",
    "z",
    "orientation",
    "class",
    "class_probability",
];
/// Column-name prefixes that are never features.
const NOT_FEATURE_PREFIXES: &[&str] = &["centroid", "bbox", "probability_"];

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    /// Trees in the forest. Default: 200.
    pub trees: usize,
    /// Seed of the bootstrap samples, feature subsets and folds. Default: 0.
    pub seed: u64,
    /// Cross-validation folds (at least 2). Default: 5.
    pub folds: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            trees: 200,
            seed: 0,
            folds: 5,
        }
    }
}

/// A file used in training and its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileHash {
    /// The path as given (labels) or relative to the output folder (tables).
    pub path: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

/// What the classifier was trained on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingData {
    /// The labels CSV.
    pub labels: FileHash,
    /// Every objects table that holds a labelled object.
    pub tables: Vec<FileHash>,
    /// Labelled objects per class.
    pub objects_per_class: BTreeMap<String, usize>,
}

/// Cross-validated and out-of-bag performance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    /// Folds of the stratified cross-validation.
    pub folds: usize,
    /// Fraction of labelled objects whose cross-validated prediction is right.
    pub cv_accuracy: f64,
    /// Out-of-bag accuracy of the final forest (over objects out of bag for some tree).
    pub oob_accuracy: f64,
    /// Cross-validated confusion matrix: `confusion[true][predicted]`, classes in model order.
    pub confusion: Vec<Vec<u64>>,
}

/// A trained classifier: everything the model file holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Classifier {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// cytoseg version that trained it.
    pub cytoseg_version: String,
    /// Feature names in the order the forest reads them (table headers, units included).
    pub features: Vec<String>,
    /// Class names; a class's index is its position.
    pub classes: Vec<String>,
    /// Training data and its hashes.
    pub training: TrainingData,
    /// Performance numbers.
    pub validation: Validation,
    /// Trees in the forest.
    pub trees: usize,
    /// Seed used.
    pub seed: u64,
    /// Features each tree sees.
    pub features_per_tree: usize,
    /// The forest.
    pub forest: Forest,
}

impl Classifier {
    /// Reads a model file; checks its format, version and internal consistency.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not a JSON model file: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(Error::format(
                path,
                format!("not a cytoseg classifier (format is not \"{FORMAT}\")"),
            ));
        }
        let version = v.get("format_version").and_then(|f| f.as_u64());
        if version != Some(FORMAT_VERSION as u64) {
            return Err(Error::format(
                path,
                format!(
                    "classifier format version {} is not supported (this cytoseg {} reads version {FORMAT_VERSION})",
                    version.map_or("missing".into(), |v| v.to_string()),
                    crate::VERSION
                ),
            ));
        }
        let n = |k: &str| v[k].as_array().map_or(0, Vec::len);
        forest::check_json(&v["forest"], n("features"), n("classes"))
            .map_err(|e| Error::format(path, e.to_string()))?;
        let c: Classifier = serde_json::from_value(v)
            .map_err(|e| Error::format(path, format!("damaged classifier: {e}")))?;
        c.forest
            .check(c.features.len(), c.classes.len())
            .map_err(|e| Error::format(path, e.to_string()))?;
        if c.classes.len() < 2 {
            return Err(Error::format(
                path,
                "a classifier needs two classes or more",
            ));
        }
        Ok(c)
    }

    /// Writes the model file (pretty JSON) atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::batch::write_json(path, self)
    }

    /// Probabilities of every class for each row of features (in [`Classifier::features`]
    /// order); rows with a non-finite feature get `None`.
    pub fn predict(&self, x: &[Vec<f64>]) -> Result<Vec<Option<Vec<f64>>>> {
        let ok: Vec<usize> = (0..x.len())
            .filter(|&i| x[i].len() == self.features.len() && x[i].iter().all(|v| v.is_finite()))
            .collect();
        let rows: Vec<Vec<f64>> = ok.iter().map(|&i| x[i].clone()).collect();
        let probs = self.forest.probabilities(&rows)?;
        let mut out = vec![None; x.len()];
        for (i, p) in ok.into_iter().zip(probs) {
            out[i] = Some(p);
        }
        Ok(out)
    }
}

/// Whether an objects-table column (header text, maybe with ` [unit]`) is a feature.
fn is_feature(name: &str) -> bool {
    let base = name.split(" [").next().unwrap_or(name);
    !NOT_FEATURES.contains(&base) && !NOT_FEATURE_PREFIXES.iter().any(|p| base.starts_with(p))
}

/// One objects table of a segment output, with the texture of its objects.
#[derive(Debug)]
pub struct ObjectsTable {
    /// The table file.
    pub path: PathBuf,
    /// Its output stem relative to the output folder (`sub/x`).
    pub stem: String,
    /// Header fields.
    pub header: Vec<String>,
    /// Data rows (fields as text).
    pub rows: Vec<Vec<String>>,
    /// Texture column names and, per row, their values.
    pub texture: (Vec<String>, Vec<Vec<f64>>),
}

/// Texture of every object of a segmented stack (labels: all planes, plane after plane): the
/// texture columns' names and, per object in objects-table order, the values.
pub fn stack_texture(stack: &Stack, labels: &[u32]) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let n = stack.width * stack.height;
    if labels.len() != n * stack.planes.len() {
        return Err(Error::shape(format!(
            "labels hold {} values, the image {} planes of {}×{}",
            labels.len(),
            stack.planes.len(),
            stack.width,
            stack.height
        )));
    }
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for (plane, image) in labels.chunks(n).zip(&stack.planes) {
        let t = texture(plane, stack.height, stack.width, &image.view()?)?;
        names = t.columns.iter().map(|c| c.name.clone()).collect();
        rows.extend((0..t.n_rows()).map(|r| t.columns.iter().map(|c| c.values[r]).collect()));
    }
    Ok((names, rows))
}

impl ObjectsTable {
    /// Reads an objects table (header and rows) and joins the texture computed from `stack`
    /// and `labels`, checking that rows and labels agree.
    pub fn from_parts(path: &Path, stem: &str, stack: &Stack, labels: &[u32]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_text(path, stem, &text, stack, labels)
    }

    /// [`ObjectsTable::from_parts`] on the table's text.
    fn from_text(
        path: &Path,
        stem: &str,
        text: &str,
        stack: &Stack,
        labels: &[u32],
    ) -> Result<Self> {
        let mut rows = parse_csv(text);
        if rows.is_empty() {
            return Err(Error::format(path, "empty objects table"));
        }
        let header = rows.remove(0);
        rows.retain(|r| !(r.len() == 1 && r[0].is_empty()));
        let (names, tex) = stack_texture(stack, labels)?;
        let lab = header
            .iter()
            .position(|h| h == "label")
            .ok_or_else(|| Error::format(path, "no label column"))?;
        if tex.len() != rows.len() {
            return Err(Error::format(
                path,
                format!(
                    "{} rows, but the labels image holds {} objects: the table and {}_labels.tif do not match",
                    rows.len(),
                    tex.len(),
                    stem
                ),
            ));
        }
        for (i, (r, t)) in rows.iter().zip(&tex).enumerate() {
            let l = r.get(lab).and_then(|v| v.parse::<f64>().ok());
            if l != Some(t[0]) {
                return Err(Error::format(
                    path,
                    format!("row {} has label {:?}, the labels image {}", i + 2, l, t[0]),
                ));
            }
        }
        Ok(ObjectsTable {
            path: path.to_path_buf(),
            stem: stem.to_string(),
            header,
            texture: (
                names[1..].to_vec(),
                tex.into_iter().map(|t| t[1..].to_vec()).collect(),
            ),
            rows,
        })
    }

    /// Loads `OUT/<stem>_objects.csv` with the texture of its objects, reading
    /// `<stem>_labels.tif` and the input image named in the run record.
    pub fn load(out: &Path, stem: &str) -> Result<Self> {
        let path = out.join(format!("{stem}{OBJECTS_SUFFIX}"));
        let rec = Record::read(out, stem)?;
        let stack = rec.input().and_then(|i| i.read()).map_err(|e| {
            Error::invalid(format!(
                "{}: texture needs the input image the run recorded: {e}",
                path.display()
            ))
        })?;
        let lpath = out.join(format!("{stem}_labels.tif"));
        let (labels, h, w) = crate::io::labels::read_labels(&lpath)?;
        if (h, w) != (stack.height, stack.width) || stack.planes.len() != 1 {
            return Err(Error::format(
                &lpath,
                format!(
                    "labels {w}×{h}, input {}×{} with {} plane(s): classify takes 2-D images whose labels match their input",
                    stack.width,
                    stack.height,
                    stack.planes.len()
                ),
            ));
        }
        Self::from_parts(&path, stem, &stack, &labels)
    }

    /// The feature columns of this table, then the texture columns.
    pub fn feature_names(&self) -> Vec<String> {
        self.header
            .iter()
            .filter(|h| is_feature(h))
            .cloned()
            .chain(self.texture.0.iter().cloned())
            .collect()
    }

    /// Every row's values of `features` (NaN where a field is not a number); an error naming
    /// the missing columns when the table lacks any.
    pub fn features(&self, features: &[String]) -> Result<Vec<Vec<f64>>> {
        enum Src {
            Col(usize),
            Tex(usize),
        }
        let mut src = Vec::with_capacity(features.len());
        let mut missing = Vec::new();
        for f in features {
            if let Some(i) = self.header.iter().position(|h| h == f) {
                src.push(Src::Col(i));
            } else if let Some(i) = self.texture.0.iter().position(|h| h == f) {
                src.push(Src::Tex(i));
            } else {
                missing.push(f.as_str());
            }
        }
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "{} lacks the classifier's feature column(s) {}: it was made with other channels or settings than the training data",
                self.path.display(),
                missing.join(", ")
            )));
        }
        Ok(self
            .rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                src.iter()
                    .map(|s| match s {
                        Src::Col(i) => row
                            .get(*i)
                            .and_then(|v| v.trim().parse::<f64>().ok())
                            .unwrap_or(f64::NAN),
                        Src::Tex(i) => self.texture.1[r][*i],
                    })
                    .collect()
            })
            .collect())
    }

    /// The object label of row `r`.
    fn label(&self, r: usize) -> Option<u32> {
        let i = self.header.iter().position(|h| h == "label")?;
        self.rows[r].get(i)?.trim().parse().ok()
    }
}

/// What a run recorded about one image (`.cytoseg/<stem>.json`).
struct Record {
    input: PathBuf,
    channels: Vec<PathBuf>,
    stem: String,
    sha256: String,
    out: PathBuf,
}

impl Record {
    fn read(out: &Path, stem: &str) -> Result<Self> {
        let path = out.join(".cytoseg").join(format!("{stem}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::invalid(format!(
                "{}: no run record ({e}); classify works on the output folder of cytoseg segment",
                path.display()
            ))
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
        let o = &v["outcome"];
        let input = o["input"]
            .as_str()
            .ok_or_else(|| Error::format(&path, "no outcome.input"))?;
        let channels = o["channel_files"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Record {
            input: PathBuf::from(input),
            channels,
            stem: stem.to_string(),
            sha256: o["sha256"].as_str().unwrap_or_default().to_string(),
            out: out.to_path_buf(),
        })
    }

    /// The run's input. A relative path that does not exist from here (the run started in
    /// another folder) is looked for under each folder above the output folder; a file found
    /// that way must have the SHA-256 the run recorded.
    fn input(&self) -> Result<crate::batch::Input> {
        let mut moved = false;
        let mut find = |p: &Path| -> PathBuf {
            if p.is_absolute() || p.exists() {
                return p.to_path_buf();
            }
            let base = std::path::absolute(&self.out).unwrap_or_else(|_| self.out.clone());
            match base.ancestors().map(|a| a.join(p)).find(|c| c.is_file()) {
                Some(c) => {
                    moved = true;
                    c
                }
                None => p.to_path_buf(),
            }
        };
        let mut i = crate::batch::Input::file(find(&self.input), PathBuf::from(&self.stem));
        i.channels = self.channels.iter().map(|c| find(c)).collect();
        if moved && i.sha256()? != self.sha256 {
            return Err(Error::invalid(format!(
                "{}: not the image the run segmented (its SHA-256 differs from the record's)",
                i.path.display()
            )));
        }
        Ok(i)
    }
}

/// The stems of every objects table under `out` (sorted; `.cytoseg` skipped).
pub fn table_stems(out: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if p.is_dir() {
                if !name.starts_with('.') {
                    walk(&p, &format!("{rel}{name}/"), out)?;
                }
            } else if let Some(stem) = name.strip_suffix(OBJECTS_SUFFIX) {
                out.push(format!("{rel}{stem}"));
            }
        }
        Ok(())
    }
    let mut v = Vec::new();
    walk(out, "", &mut v)?;
    v.sort();
    if v.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no *{OBJECTS_SUFFIX} tables (run cytoseg segment with objects tables first)",
            out.display()
        )));
    }
    Ok(v)
}

/// One labelled object of the labels CSV.
struct Labelled {
    line: usize,
    image: String,
    label: u32,
    class: String,
}

fn read_labels_csv(path: &Path) -> Result<Vec<Labelled>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let rows = parse_csv(&text);
    let header: Vec<String> = rows
        .first()
        .map(|h| h.iter().map(|s| s.trim().to_ascii_lowercase()).collect())
        .unwrap_or_default();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            Error::format(
                path,
                format!("no '{name}' column (the header must name image, label and class)"),
            )
        })
    };
    let (ci, cl, cc) = (col("image")?, col("label")?, col("class")?);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate().skip(1) {
        if r.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let line = i + 1;
        let get = |c: usize| r.get(c).map(|s| s.trim()).unwrap_or("");
        let (image, label, class) = (get(ci), get(cl), get(cc));
        if image.is_empty() || class.is_empty() {
            return Err(Error::format(
                path,
                format!("line {line}: image and class must not be empty"),
            ));
        }
        let label: u32 = label.parse().ok().filter(|&l| l > 0).ok_or_else(|| {
            Error::format(
                path,
                format!("line {line}: label '{label}' is not an object label (1, 2, ...)"),
            )
        })?;
        if !seen.insert((image.to_string(), label)) {
            return Err(Error::format(
                path,
                format!("line {line}: object {label} of {image} is labelled twice"),
            ));
        }
        out.push(Labelled {
            line,
            image: image.to_string(),
            label,
            class: class.to_string(),
        });
    }
    if out.is_empty() {
        return Err(Error::format(path, "no labelled objects"));
    }
    Ok(out)
}

/// Maps every name an image may go by (stem, recorded input path, file name, file stem) to its
/// output stem; names shared by several images are ambiguous (`None`).
fn image_names(out: &Path, stems: &[String]) -> HashMap<String, Option<String>> {
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    let mut add = |k: String, stem: &str| {
        names
            .entry(k)
            .and_modify(|v| {
                if v.as_deref() != Some(stem) {
                    *v = None
                }
            })
            .or_insert_with(|| Some(stem.to_string()));
    };
    for s in stems {
        add(s.clone(), s);
        if let Ok(r) = Record::read(out, s) {
            add(r.input.display().to_string(), s);
            if let Some(f) = r.input.file_name() {
                add(f.to_string_lossy().into_owned(), s);
            }
            if let Some(f) = r.input.file_stem() {
                add(f.to_string_lossy().into_owned(), s);
            }
        }
    }
    names
}

/// Refuses training settings out of range.
fn check_options(opts: &TrainOptions) -> Result<()> {
    if opts.folds < 2 {
        return Err(Error::invalid("cross-validation needs at least 2 folds"));
    }
    if opts.trees == 0 || opts.trees > 100_000 {
        return Err(Error::invalid("trees must be between 1 and 100000"));
    }
    Ok(())
}

/// Where a training label came from, to name it in errors.
enum Origin<'a> {
    /// A line of the labels CSV.
    Line(&'a Path, usize),
    /// Pick `1`(0-based) of the in-memory sample named `0`.
    Pick(&'a str, usize),
}

impl Origin<'_> {
    /// An error about this label.
    fn error(&self, msg: String) -> Error {
        match self {
            Origin::Line(path, line) => Error::format(*path, format!("line {line}: {msg}")),
            Origin::Pick(name, i) => Error::invalid(format!("sample '{name}', pick {i}: {msg}")),
        }
    }
}

/// One labelled object: the index of its table, its label and class, where the label came from.
struct Example<'a> {
    table: usize,
    label: u32,
    class: &'a str,
    origin: Origin<'a>,
}

/// Trains on labelled objects of `tables` (the features those of the first table): checks,
/// stratified cross-validation, the final forest. `whole` makes an error about the training set
/// as a whole; `training` describes the training data given the objects per class.
fn fit(
    tables: &[ObjectsTable],
    examples: &[Example],
    opts: &TrainOptions,
    whole: impl Fn(&str) -> Error,
    training: impl FnOnce(BTreeMap<String, usize>) -> Result<TrainingData>,
) -> Result<Classifier> {
    check_options(opts)?;
    let first = tables.first().ok_or_else(|| whole("no labelled objects"))?;
    let features = first.feature_names();
    if features.is_empty() {
        return Err(Error::invalid("the objects tables have no feature columns"));
    }
    let values: Vec<Vec<Vec<f64>>> = tables
        .iter()
        .map(|t| t.features(&features))
        .collect::<Result<_>>()?;
    let classes: Vec<String> = examples
        .iter()
        .map(|l| l.class.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.len() < 2 {
        return Err(whole(
            "only one class is labelled: a classifier needs two or more",
        ));
    }
    for c in &classes {
        if examples.iter().filter(|l| l.class == c).count() < 2 {
            return Err(whole(&format!(
                "class '{c}' has one labelled object: label two or more of every class"
            )));
        }
    }
    let mut x = Vec::with_capacity(examples.len());
    let mut y = Vec::with_capacity(examples.len());
    for l in examples {
        let t = &tables[l.table];
        let r = (0..t.rows.len())
            .find(|&r| t.label(r) == Some(l.label))
            .ok_or_else(|| {
                l.origin
                    .error(format!("{} has no object {}", t.stem, l.label))
            })?;
        let row = values[l.table][r].clone();
        if let Some(f) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                l.origin
                    .error(format!(
                        "object {} of {} has no finite value for feature '{}': label another object",
                        l.label, t.stem, features[f]
                    ))
                    .to_string(),
            ));
        }
        x.push(row);
        y.push(classes.iter().position(|c| c == l.class).expect("listed") as u32);
    }
    if x.len() < opts.folds {
        return Err(Error::invalid(format!(
            "{} labelled objects are fewer than the {} folds",
            x.len(),
            opts.folds
        )));
    }
    let k = classes.len();
    // Stratified folds: each class's objects shuffled, dealt round-robin.
    let mut rng = SplitMix::new(opts.seed ^ 0xC1A5_51F1);
    let mut fold = vec![0usize; x.len()];
    let mut deal = 0usize;
    for c in 0..k as u32 {
        let mut idx: Vec<usize> = (0..x.len()).filter(|&i| y[i] == c).collect();
        rng.shuffle(&mut idx);
        for i in idx {
            fold[i] = deal % opts.folds;
            deal += 1;
        }
    }
    let mut confusion = vec![vec![0u64; k]; k];
    for f in 0..opts.folds {
        let tr: Vec<usize> = (0..x.len()).filter(|&i| fold[i] != f).collect();
        let te: Vec<usize> = (0..x.len()).filter(|&i| fold[i] == f).collect();
        if te.is_empty() {
            continue;
        }
        let xt: Vec<Vec<f64>> = tr.iter().map(|&i| x[i].clone()).collect();
        let yt: Vec<u32> = tr.iter().map(|&i| y[i]).collect();
        let (fm, _) = Forest::fit(
            &xt,
            &yt,
            k,
            opts.trees,
            opts.seed.wrapping_add(f as u64 + 1),
        )?;
        let xe: Vec<Vec<f64>> = te.iter().map(|&i| x[i].clone()).collect();
        for (&i, p) in te.iter().zip(fm.probabilities(&xe)?) {
            confusion[y[i] as usize][best(&p).0] += 1;
        }
    }
    let right: u64 = (0..k).map(|c| confusion[c][c]).sum();
    let cv_accuracy = right as f64 / x.len() as f64;
    let (forest, oob) = Forest::fit(&x, &y, k, opts.trees, opts.seed)?;
    let (mut oob_n, mut oob_right) = (0usize, 0usize);
    for (v, &t) in oob.iter().zip(&y) {
        if v.iter().any(|&c| c > 0) {
            oob_n += 1;
            let p: Vec<f64> = v.iter().map(|&c| c as f64).collect();
            oob_right += usize::from(best(&p).0 == t as usize);
        }
    }
    let mut per_class = BTreeMap::new();
    for l in examples {
        *per_class.entry(l.class.to_string()).or_insert(0) += 1;
    }
    Ok(Classifier {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        cytoseg_version: crate::VERSION.into(),
        features_per_tree: forest::features_per_tree(features.len()),
        features,
        classes,
        training: training(per_class)?,
        validation: Validation {
            folds: opts.folds,
            cv_accuracy,
            oob_accuracy: if oob_n > 0 {
                oob_right as f64 / oob_n as f64
            } else {
                f64::NAN
            },
            confusion,
        },
        trees: opts.trees,
        seed: opts.seed,
        forest,
    })
}

/// Trains a classifier on the objects of segment output `out` labelled in `labels_csv`.
pub fn train(out: &Path, labels_csv: &Path, opts: &TrainOptions) -> Result<Classifier> {
    check_options(opts)?;
    let labelled = read_labels_csv(labels_csv)?;
    let stems = table_stems(out)?;
    let names = image_names(out, &stems);
    // The stem of every labelled object.
    let mut which = Vec::with_capacity(labelled.len());
    for l in &labelled {
        let stem = match names.get(&l.image) {
            Some(Some(s)) => s.clone(),
            Some(None) => {
                return Err(Error::format(
                    labels_csv,
                    format!(
                        "line {}: image '{}' names several images; use the output stem",
                        l.line, l.image
                    ),
                ));
            }
            None => {
                return Err(Error::format(
                    labels_csv,
                    format!(
                        "line {}: no objects table for image '{}' in {}",
                        l.line,
                        l.image,
                        out.display()
                    ),
                ));
            }
        };
        which.push(stem);
    }
    // Each table used loaded once, in stem order.
    let used: Vec<&String> = which.iter().collect::<BTreeSet<_>>().into_iter().collect();
    let tables: Vec<ObjectsTable> = used
        .iter()
        .map(|s| ObjectsTable::load(out, s))
        .collect::<Result<_>>()?;
    let examples: Vec<Example> = labelled
        .iter()
        .zip(&which)
        .map(|(l, stem)| Example {
            table: used.binary_search(&stem).expect("listed"),
            label: l.label,
            class: &l.class,
            origin: Origin::Line(labels_csv, l.line),
        })
        .collect();
    fit(
        &tables,
        &examples,
        opts,
        |m| Error::format(labels_csv, m),
        |per_class| {
            Ok(TrainingData {
                labels: FileHash {
                    path: labels_csv.display().to_string(),
                    sha256: sha256_file(labels_csv)?,
                },
                tables: tables
                    .iter()
                    .map(|t| {
                        Ok(FileHash {
                            path: format!("{}{OBJECTS_SUFFIX}", t.stem),
                            sha256: sha256_file(&t.path)?,
                        })
                    })
                    .collect::<Result<_>>()?,
                objects_per_class: per_class,
            })
        },
    )
}

/// What applying a classifier did.
#[derive(Debug, Clone, Default)]
pub struct ApplySummary {
    /// Objects tables rewritten.
    pub tables: usize,
    /// Objects classified.
    pub objects: usize,
    /// Objects per predicted class.
    pub per_class: BTreeMap<String, usize>,
    /// Objects left unclassified (a non-finite feature).
    pub unclassified: usize,
    /// `wells.csv` when it was updated with class fractions.
    pub wells: Option<PathBuf>,
}

/// Whether a column is one that applying writes (replaced on a re-run).
fn is_class_column(name: &str) -> bool {
    name == "class" || name == "class_probability" || name.starts_with("probability_")
}

/// Classifies the objects of `table` and rewrites its file with the class columns; adds the
/// counts to `summary`.
pub fn apply_to_table(
    model: &Classifier,
    table: &ObjectsTable,
    summary: &mut ApplySummary,
) -> Result<()> {
    let x = table.features(&model.features)?;
    let probs = model.predict(&x)?;
    let keep: Vec<usize> = (0..table.header.len())
        .filter(|&i| !is_class_column(&table.header[i]))
        .collect();
    let join = |fields: Vec<String>| {
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut header: Vec<String> = keep.iter().map(|&i| table.header[i].clone()).collect();
    header.push("class".into());
    header.push("class_probability".into());
    header.extend(model.classes.iter().map(|c| format!("probability_{c}")));
    let mut text = join(header);
    text.push('\n');
    for (row, p) in table.rows.iter().zip(&probs) {
        let mut f: Vec<String> = keep
            .iter()
            .map(|&i| row.get(i).cloned().unwrap_or_default())
            .collect();
        match p {
            Some(p) => {
                let (c, pc) = best(p);
                f.push(model.classes[c].clone());
                f.push(format!("{pc}"));
                f.extend(p.iter().map(|v| format!("{v}")));
                *summary
                    .per_class
                    .entry(model.classes[c].clone())
                    .or_insert(0) += 1;
                summary.objects += 1;
            }
            None => {
                f.push(String::new());
                f.extend(std::iter::repeat_n(
                    "NaN".to_string(),
                    model.classes.len() + 1,
                ));
                summary.unclassified += 1;
            }
        }
        text += &join(f);
        text.push('\n');
    }
    crate::io::write_atomic(&table.path, true, |w| {
        std::io::Write::write_all(w, text.as_bytes()).map_err(|e| Error::io(&table.path, e))
    })?;
    summary.tables += 1;
    Ok(())
}

/// Applies `model` to every objects table of segment output `out`, then adds per-well class
/// fractions to `OUT/wells.csv` when it exists and redraws the screen's readouts (heatmaps of
/// the fractions; Parquet tables when the run wrote them). Re-runnable: earlier class columns
/// are replaced.
pub fn apply_folder(model: &Classifier, out: &Path) -> Result<ApplySummary> {
    let mut summary = ApplySummary::default();
    let stems = table_stems(out)?;
    for stem in &stems {
        let t = ObjectsTable::load(out, stem)?;
        apply_to_table(model, &t, &mut summary)?;
    }
    summary.wells = crate::screen::classes::write_class_fractions(out, &model.classes)?;
    let tables: Vec<PathBuf> = stems
        .iter()
        .map(|s| out.join(format!("{s}{OBJECTS_SUFFIX}")))
        .collect();
    let readouts = crate::screen::readouts::Readouts {
        values: Vec::new(),
        parquet: crate::screen::readouts::has_parquet(out),
    };
    crate::screen::readouts::write_readouts(out, &tables, &readouts)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_exclude_identity_position_and_class_columns() {
        for f in ["area [um^2]", "intensity_mean-1", "perimeter", "solidity"] {
            assert!(is_feature(f), "{f}");
        }
        for f in [
            "label",
            "centroid-0 [um]",
            "bbox-2",
            "plate",
            "t",
            "class",
            "class_probability",
            "probability_a",
            "orientation",
        ] {
            assert!(!is_feature(f), "{f}");
        }
    }

    #[test]
    fn missing_feature_columns_are_named_and_non_numbers_read_as_nan() {
        let t = ObjectsTable {
            path: PathBuf::from("x_objects.csv"),
            stem: "x".into(),
            header: vec!["label".into(), "area".into(), "solidity".into()],
            rows: vec![
                vec!["1".into(), "5".into(), "0.9".into()],
                vec!["2".into(), "oops".into(), "0.8".into()],
            ],
            texture: (vec!["texture_ASM".into()], vec![vec![0.5], vec![0.25]]),
        };
        assert_eq!(t.feature_names(), ["area", "solidity", "texture_ASM"]);
        let f = ["texture_ASM".to_string(), "area".to_string()];
        let x = t.features(&f).unwrap();
        assert_eq!(x[0], [0.5, 5.0]);
        assert!(x[1][1].is_nan());
        let e = t
            .features(&[
                "area".into(),
                "intensity_mean-1".into(),
                "texture_energy".into(),
            ])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x_objects.csv") && e.contains("intensity_mean-1, texture_energy"),
            "{e}"
        );
    }

    #[test]
    fn hostile_labels_csvs_are_refused_with_their_line() {
        let dir = std::env::temp_dir().join(format!("cytoseg-cls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("l.csv");
        for (text, want) in [
            ("image,label\n", "no 'class' column"),
            ("image,label,class\na,x,b\n", "line 2"),
            ("image,label,class\na,0,b\n", "not an object label"),
            ("image,label,class\na,1,\n", "must not be empty"),
            ("image,label,class\na,1,b\na,1,c\n", "labelled twice"),
            ("image,label,class\n", "no labelled objects"),
            ("\"unterminated,label,class\n", "no 'image' column"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = read_labels_csv(&p).err().expect(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
