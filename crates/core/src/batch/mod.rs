//! The batch engine: input expansion (files, folders, globs), bounded parallel processing,
//! per-image outputs with done records for resuming, the run summary and manifest. Every face
//! runs this one engine: `cytoseg segment` and `cytoseg validate`, the C API's
//! `cytoseg_segment_folder`, Fiji's Segment Folder (JNI) and Python's `cytoseg.segment_folder`,
//! so the same folder gives the same outputs whichever started it. Progress and cancellation
//! go through an [`Observer`] (or, for hosts that must get callbacks on their own thread,
//! [`segment_folder_on_caller_thread`]).
//!
//! Layout of an output folder:
//! * `<stem>_labels.tif`, `<stem>_objects.csv` (and `<stem>_flows.npy` with `--save-flows`) per
//!   image; inputs found under a folder argument keep their sub-folder (`sub/x.tif` →
//!   `OUT/sub/x_labels.tif`), files and glob matches go to `OUT/` itself;
//! * `.cytoseg/<stem>.json`: the image's record, written "started" before its outputs and
//!   "done" (with the SHA-256 of the input and of every output) after them;
//! * `summary.csv` and `run.json` for the whole run (rewritten by every run, covering skipped
//!   images too).
//!
//! An image is *finished* when its record says done for the same input SHA-256 and the same run
//! fingerprint (cytoseg version, model SHA-256, every parameter), and every output it lists
//! exists with the recorded SHA-256; a re-run skips it. Anything else is redone. Existing
//! outputs are replaced only when they are this run's own (a record with the same input and
//! fingerprint, i.e. an interrupted image) or with `overwrite`.
//!
//! **Stacks** are segmented plane by plane. Label convention (every face): labels are numbered
//! 1..n *per plane* (each plane is an independent 2-D segmentation); the objects table gives
//! each row's plane by its 0-based coordinates in leading columns named after the stack's axes
//! (`t`, `z`), so `(t, z, label)` names one object.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::image::ImageView;
use crate::io::image::{IMAGE_EXTENSIONS, Stack, read_stack};
use crate::io::labels::{LabelStack, write_label_stack};
use crate::io::{npy, write_atomic};
use crate::measure::csv_field;
use crate::model::{ChannelChoice, Model, SegmentParams, VolumeMode};
use crate::qc::{self, ImageQc};

mod objects;
pub use objects::{objects_table, objects_table_3d, write_objects};

/// Version of the engine, recorded in run manifests and fingerprints.
pub const ENGINE_VERSION: &str = crate::VERSION;

/// One input image and where its outputs go.
#[derive(Debug, Clone)]
pub struct Input {
    /// The image file (for a screen field: its first channel's file).
    pub path: PathBuf,
    /// Output stem relative to the output folder (`sub/x` for `DIR/sub/x.tif`).
    pub stem: PathBuf,
    /// For a screen field: every channel's file, in channel order (one channel each, read as
    /// one multi-channel image); empty for an ordinary image.
    pub channels: Vec<PathBuf>,
    /// For a screen field: plate, well, row, column and site (see [`crate::screen`]); empty
    /// otherwise.
    pub fields: BTreeMap<String, String>,
}

impl Input {
    /// An ordinary one-file input.
    pub fn file(path: PathBuf, stem: PathBuf) -> Self {
        Input {
            path,
            stem,
            channels: Vec::new(),
            fields: BTreeMap::new(),
        }
    }

    /// SHA-256 of the file; for a field, of the channel files' SHA-256s in order.
    pub fn sha256(&self) -> Result<String> {
        if self.channels.is_empty() {
            return sha256_file(&self.path);
        }
        let mut h = Sha256::new();
        for c in &self.channels {
            h.update(sha256_file(c)?.as_bytes());
        }
        Ok(format!("{:x}", h.finalize()))
    }

    /// The image: the file, or a field's channel files as one multi-channel stack.
    pub fn read(&self) -> Result<Stack> {
        if self.channels.is_empty() {
            read_stack(&self.path)
        } else {
            crate::screen::read_field(&self.channels)
        }
    }

    fn estimate(&self, volume: bool) -> u64 {
        estimate(&self.path, volume).saturating_mul(self.channels.len().max(1) as u64)
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn has_image_ext(p: &Path) -> bool {
    IMAGE_EXTENSIONS.contains(&crate::io::extension(p).as_str())
}

fn walk(dir: &Path, recursive: bool, skip: Option<&Path>, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            let is_out = skip.is_some_and(|s| p.canonicalize().is_ok_and(|c| c == s));
            if recursive && !is_out {
                walk(&p, recursive, skip, out)?;
            }
        } else if has_image_ext(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Expands a run's inputs: files as given (any extension: an unsupported one fails
/// for that image only), folders (their images; sub-folders with `recursive`; the output folder
/// and hidden entries are left out) and glob patterns. Duplicates are dropped; two inputs that
/// would write the same outputs are an error naming both.
pub fn expand_inputs(args: &[String], recursive: bool, out_dir: &Path) -> Result<Vec<Input>> {
    let out_canon = out_dir.canonicalize().ok();
    let mut inputs: Vec<Input> = Vec::new();
    let stem_of = |rel: &Path| rel.with_extension("");
    for a in args {
        let p = Path::new(a);
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, recursive, out_canon.as_deref(), &mut found)?;
            if found.is_empty() {
                log::warn!("{a}: no images in this folder");
            }
            for f in found {
                let rel = f.strip_prefix(p).unwrap_or(&f).to_path_buf();
                inputs.push(Input::file(f, stem_of(&rel)));
            }
        } else if p.exists() {
            let name = p
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| Error::invalid(format!("{a}: not a file name")))?;
            inputs.push(Input::file(p.to_path_buf(), stem_of(&name)));
        } else if is_glob(a) {
            let paths = glob::glob(a)
                .map_err(|e| Error::invalid(format!("bad glob pattern {a:?}: {e}")))?;
            let mut n = 0;
            for m in paths {
                let f = m.map_err(|e| {
                    let path = e.path().to_path_buf();
                    Error::io(path, e.into())
                })?;
                if f.is_file() {
                    n += 1;
                    let name = f.file_name().map(PathBuf::from).unwrap_or_default();
                    inputs.push(Input::file(f, stem_of(&name)));
                }
            }
            if n == 0 {
                return Err(Error::invalid(format!("no files match {a:?}")));
            }
        } else {
            return Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        }
    }
    // Same file named twice (e.g. a folder and a glob inside it): keep the first.
    let mut seen = std::collections::HashSet::new();
    inputs.retain(|i| seen.insert(i.path.canonicalize().unwrap_or_else(|_| i.path.clone())));
    let mut by_stem: HashMap<PathBuf, Vec<&Input>> = HashMap::new();
    for i in &inputs {
        by_stem.entry(i.stem.clone()).or_default().push(i);
    }
    let mut clashes: Vec<String> = by_stem
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(stem, v)| {
            format!(
                "{} → {}_labels.tif",
                v.iter()
                    .map(|i| i.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and "),
                stem.display()
            )
        })
        .collect();
    if !clashes.is_empty() {
        clashes.sort();
        return Err(Error::invalid(format!(
            "{} input(s) would write the same outputs: {}. Give their common parent folder \
             (outputs then mirror the sub-folders) or run them into different --out folders",
            clashes.len(),
            clashes.join("; ")
        )));
    }
    Ok(inputs)
}

/// How the planes of a stack become objects.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum StackMode {
    /// Plane by plane, objects numbered per plane (the default; 2-D images always).
    #[default]
    Planes,
    /// Cellpose's `do_3D`: 3-D objects from the network run on the stack's YX, ZY and ZX planes
    /// ([`crate::model::VolumeMode::Flows3d`]). `anisotropy` `None` takes the file's z spacing
    /// (see [`crate::model::anisotropy_for`]).
    Flows3d {
        /// z spacing over pixel width; `None`: from the file, else 1.
        anisotropy: Option<f64>,
    },
    /// Cellpose's stitching mode: per-plane objects linked across z when their IoU reaches
    /// `threshold` ([`crate::model::VolumeMode::Stitch`]).
    Stitch {
        /// IoU that links masks of consecutive planes (0.25 is usual).
        threshold: f64,
    },
}

impl StackMode {
    /// The mode of the host APIs' numeric form (C's `cytoseg_batch_options.volume_mode`,
    /// Python, Java): -1 = [`StackMode::Planes`]; 0 = [`StackMode::Flows3d`] with `value` the
    /// anisotropy (0 = the file's z spacing, else 1); 1 = [`StackMode::Stitch`] with `value` the
    /// IoU threshold. Checked.
    pub fn from_code(code: i32, value: f64) -> Result<StackMode> {
        use crate::model::VolumeMode;
        match code {
            -1 => Ok(StackMode::Planes),
            // The 3-D modes as the volume API reads them (one conversion and check), except
            // that a do_3D anisotropy of 0 defers to each file's z spacing.
            0 | 1 => Ok(match VolumeMode::from_code(code, value)? {
                VolumeMode::Flows3d { anisotropy } => StackMode::Flows3d {
                    anisotropy: (value != 0.0).then_some(anisotropy),
                },
                VolumeMode::Stitch { threshold } => StackMode::Stitch { threshold },
            }),
            other => Err(Error::invalid(format!(
                "unknown stack mode {other} (-1 = plane by plane, 0 = do_3D, 1 = stitching)"
            ))),
        }
    }

    /// Whether stacks become 3-D objects.
    pub fn is_3d(&self) -> bool {
        !matches!(self, StackMode::Planes)
    }

    /// As recorded in `run.json` and the run fingerprint.
    pub fn to_json(&self) -> serde_json::Value {
        match *self {
            StackMode::Planes => serde_json::json!({"mode": "planes"}),
            StackMode::Flows3d { anisotropy } => serde_json::json!({
                "mode": "do_3d",
                "anisotropy": anisotropy.map_or(serde_json::json!("from the file's z spacing, else 1"), |a| serde_json::json!(a)),
            }),
            StackMode::Stitch { threshold } => {
                serde_json::json!({"mode": "stitch", "stitch_threshold": threshold})
            }
        }
    }
}

/// How a batch runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Output folder.
    pub out: PathBuf,
    /// Images processed at once (>= 1).
    pub jobs: usize,
    /// Bytes of memory the images in flight may use together (estimated).
    pub memory_budget: u64,
    /// Redo finished images and replace existing outputs.
    pub overwrite: bool,
    /// Write `<stem>_objects.csv`.
    pub measure: bool,
    /// Write `<stem>_flows.npy`.
    pub save_flows: bool,
    /// Write `summary.csv` and `run.json` at the end of [`segment_folder`] (default). Off for
    /// a worker of a distributed run that processes part of a folder: per-image outputs and
    /// records are written as always, and a final run over all inputs (which skips the finished
    /// images) writes the summary of the whole.
    pub run_files: bool,
    /// What started the run, recorded as `command` in `run.json`: the command line's
    /// arguments, or the API call and its host (e.g. `{"api": "c", "function":
    /// "cytoseg_segment_folder"}`).
    pub invocation: serde_json::Value,
    /// A classifier applied to each objects table as it is written (`class` columns), and to
    /// `wells.csv` at the end (class fractions); see [`crate::classify`].
    pub classifier: Option<std::sync::Arc<crate::classify::Classifier>>,
    /// Per-well values drawn as plate heatmaps and dose-response fits (screens), and whether the
    /// tables are also written as Parquet; see [`crate::screen::readouts`].
    pub readouts: crate::screen::readouts::Readouts,
    /// How stacks are segmented: plane by plane (default) or into 3-D objects.
    pub stack_mode: StackMode,
}

impl BatchOptions {
    /// Defaults for an output folder: jobs = cores (at most 4), 60% of the available memory,
    /// no overwrite, objects tables on, no flows.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        BatchOptions {
            out: out.into(),
            jobs: default_jobs(None),
            memory_budget: default_memory_budget(),
            overwrite: false,
            measure: true,
            save_flows: false,
            run_files: true,
            invocation: serde_json::Value::Null,
            classifier: None,
            readouts: Default::default(),
            stack_mode: StackMode::Planes,
        }
    }
}

/// `jobs`, or the number of cores capped at 4.
pub fn default_jobs(jobs: Option<usize>) -> usize {
    jobs.filter(|&j| j > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4)
    })
}

/// 60% of the available memory (4 GiB when unknown).
pub fn default_memory_budget() -> u64 {
    available_memory().map(|m| m / 10 * 6).unwrap_or(4 << 30)
}

/// Receives a batch's progress and may cancel it. Methods are called from the worker threads
/// (use [`segment_folder_on_caller_thread`] to receive them on one thread instead).
pub trait Observer: Sync {
    /// An image starts (`index` into the inputs).
    fn image_started(&self, _index: usize, _input: &Input) {}
    /// An output file of image `index` has just been written (before the image is finished).
    fn output_written(&self, _index: usize, _path: &Path) {}
    /// Image `index` finished (ok, skipped, failed or cancelled); `done` of `total` are.
    fn image_finished(&self, _index: usize, _outcome: &Outcome, _done: usize, _total: usize) {}
    /// Polled before each image and between the network's tile batches: `true` stops the run.
    /// Images not yet finished are reported as cancelled; a later run redoes them.
    fn cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores everything and never cancels.
pub struct Quiet;
impl Observer for Quiet {}

/// The one-line description of a finished image that every face prints or logs:
/// `[k/n] ok FILE: N object(s) in P plane(s), S s`, `[k/n] skipped FILE (...)`,
/// `[k/n] FAILED FILE: error`, `[k/n] cancelled FILE`.
pub fn outcome_line(o: &Outcome, done: usize, total: usize) -> String {
    match o.status.as_str() {
        "failed" => format!("[{done}/{total}] FAILED {}: {}", o.input, o.error),
        "skipped" => format!(
            "[{done}/{total}] skipped {} (finished earlier: {} objects)",
            o.input, o.objects
        ),
        "cancelled" => format!("[{done}/{total}] cancelled {}", o.input),
        _ => format!(
            "[{done}/{total}] ok {}: {} object(s) in {} plane(s), {:.2} s",
            o.input, o.objects, o.planes, o.seconds
        ),
    }
}

/// What happened to one image.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Outcome {
    /// The input file.
    pub input: String,
    /// "ok", "skipped" (finished by an earlier run), "failed" or "cancelled".
    pub status: String,
    /// The error, for failed images.
    pub error: String,
    /// SHA-256 of the input file (empty if it could not be read).
    pub sha256: String,
    /// Number of planes segmented.
    pub planes: usize,
    /// Objects over all planes.
    pub objects: u64,
    /// Area statistics of the objects (in `area_unit`).
    pub area: AreaStats,
    /// Output files (relative to the output folder) and their SHA-256.
    pub outputs: BTreeMap<String, String>,
    /// Seconds spent on the image (in the run that made it).
    pub seconds: f64,
    /// Quality-control measures (see [`crate::qc`]); NaN where undefined.
    #[serde(default)]
    pub qc: ImageQc,
    /// For a screen field: plate, well, row, column, site.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// For a screen field: its channel files, in channel order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_files: Vec<String>,
}

/// Mean, median, min and max object area.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AreaStats {
    /// Mean area.
    pub mean: f64,
    /// Median area.
    pub median: f64,
    /// Smallest area.
    pub min: f64,
    /// Largest area.
    pub max: f64,
    /// Unit of the areas, e.g. "µm^2" or "pixel^2".
    pub unit: String,
}

/// The per-image record in `OUT/.cytoseg/`.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    state: String,
    fingerprint: String,
    outcome: Outcome,
}

/// Memory reservations of the images in flight.
struct Budget {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    fn acquire(&self, want: u64) -> u64 {
        let want = want.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        // An image larger than the whole budget runs alone.
        while *used > 0 && *used + want > self.total {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += want;
        want
    }

    fn release(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= n;
        self.freed.notify_all();
    }
}

/// Bytes of memory available to this process (Linux `MemAvailable`), if known.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Estimated peak memory of one image: the decoded planes (and a converted copy), the labels of
/// every plane (4 bytes per pixel), and the segmentation's working set on one plane (network
/// input, flows, tiles' accumulator, masks: about 48 bytes per pixel) or, segmenting in 3-D
/// (`volume`), on the whole stack (the normalized volume, the summed flows, the 3-D flow field
/// and histogram: about 64 bytes per voxel; voxels counted as decoded bytes, an upper bound).
fn estimate(path: &Path, volume: bool) -> u64 {
    match crate::io::image::decoded_size_hint(path) {
        // Saturating: a hostile header's sizes must not wrap around to a small estimate.
        Some(h) => {
            let working = if volume {
                64 * h.bytes.max(h.plane_pixels) as u128
            } else {
                48 * h.plane_pixels as u128
            };
            (2 * h.bytes as u128 + 4 * h.bytes.max(h.plane_pixels) as u128 + working + (16 << 20))
                .min(u64::MAX as u128) as u64
        }
        None => 64 << 20,
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// The current time as an RFC 3339 UTC timestamp (second precision).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The parameters a run segments with: with do_3D, [`crate::model::Precision::Auto`] is float32
/// (see [`crate::model::precision::do3d_params`]).
fn run_params<'a>(params: &'a SegmentParams, opts: &BatchOptions) -> Cow<'a, SegmentParams> {
    match opts.stack_mode {
        StackMode::Flows3d { .. } => crate::model::precision::do3d_params(params),
        StackMode::Planes | StackMode::Stitch { .. } => Cow::Borrowed(params),
    }
}

/// Every parameter of a run as JSON (effective values, model defaults filled in).
pub fn params_json(model: &Model, p: &SegmentParams) -> serde_json::Value {
    let used = model.precision_for(p).ok();
    serde_json::json!({
        "diameter": p.diameter,
        "model_diameter": model.manifest.diameter,
        "channels": match &p.channels {
            ChannelChoice::Auto => serde_json::json!("auto"),
            ChannelChoice::Select(c) => serde_json::json!(c),
        },
        "cellprob_threshold": p.mask.cellprob_threshold,
        "flow_threshold": p.mask.flow_threshold,
        "niter": if p.mask.niter == 0 { serde_json::json!("auto (200 / resize factor)") } else { serde_json::json!(p.mask.niter) },
        "min_size": p.mask.min_size,
        "max_size_fraction": p.mask.max_size_fraction,
        "tiling": p.tiling.name(),
        "tile_size": p.tiling.tile_and_overlap(p, &model.manifest).0,
        "tile_overlap": p.tiling.tile_and_overlap(p, &model.manifest).1,
        "batch_size": p.batch_size,
        "precision": p.precision.name(),
        "precision_used": used.map_or("none (refused)", |(q, _)| q.name()),
        "network_sha256": used.map_or(String::new(), |(_, sha)| sha.to_ascii_lowercase()),
        "normalization": {
            "method": model.manifest.normalization.method,
            "low": model.manifest.normalization.low,
            "high": model.manifest.normalization.high,
        },
    })
}

/// What makes two runs' outputs the same: software version, model file, every parameter and
/// which outputs are written.
fn fingerprint(model: &Model, p: &SegmentParams, opts: &BatchOptions) -> String {
    let mut v = serde_json::json!({
        "cytoseg": ENGINE_VERSION,
        "model_sha256": model.manifest.model.sha256.to_ascii_lowercase(),
        "params": params_json(model, p),
        "measure": opts.measure,
        "save_flows": opts.save_flows,
    });
    if opts.stack_mode.is_3d() {
        // Only in 3-D modes, so that plane-by-plane runs keep their fingerprint.
        v["stack_mode"] = opts.stack_mode.to_json();
    }
    if let Some(c) = &opts.classifier {
        // Only with a classifier, so that runs without one keep their fingerprint.
        let text = serde_json::to_string(c.as_ref()).unwrap_or_default();
        v["classifier_sha256"] = format!("{:x}", Sha256::digest(text.as_bytes())).into();
    }
    format!("{:x}", Sha256::digest(v.to_string().as_bytes()))
}

fn record_path(out: &Path, stem: &Path) -> PathBuf {
    let mut p = out.join(".cytoseg").join(stem);
    let name = format!(
        "{}.json",
        p.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    p.set_file_name(name);
    p
}

/// The outcomes that the records of output folder `out` hold for its finished images (state
/// "done"; status `ok`), sorted by output stem: what every run into `out` has finished, whether
/// or not the last run listed it. Unreadable records are left out (their images count as not
/// finished, as a resumed run would count them).
pub fn finished_outcomes(out: &Path) -> Result<Vec<Outcome>> {
    let root = out.join(".cytoseg");
    if !root.is_dir() {
        return Err(Error::invalid(format!(
            "{}: no .cytoseg records; not an output folder of cytoseg segment",
            out.display()
        )));
    }
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let p = e.map_err(|e| Error::io(&d, e))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files
        .iter()
        .filter_map(|p| read_record(p))
        .filter(|r| r.state == "done")
        .map(|r| Outcome {
            status: "ok".into(),
            ..r.outcome
        })
        .collect())
}

fn read_record(path: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `value` as pretty JSON (and a final newline) to `path` atomically, replacing it;
/// creates the parent folder.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::invalid(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(path, true, |w| {
        w.write_all(text.as_bytes())
            .map_err(|e| Error::io(path, e))?;
        w.write_all(b"\n").map_err(|e| Error::io(path, e))
    })
}

fn output_name(stem: &Path, suffix: &str) -> String {
    format!("{}{suffix}", stem.display())
}

/// What segmenting one image gives: all labels (plane after plane), the flows if kept, the
/// object count per plane (one for a 3-D volume), each plane's QC measures and the network's
/// quality (per plane, or one for a volume).
struct Segmented {
    labels: Vec<u32>,
    flows: Option<Vec<f32>>,
    counts: Vec<u32>,
    planes_qc: Vec<qc::PlaneQc>,
    network: Vec<qc::NetworkQuality>,
}

/// Shared state of a batch.
struct Job<'a> {
    model: &'a Model,
    params: &'a SegmentParams,
    opts: &'a BatchOptions,
    fingerprint: String,
    observer: &'a dyn Observer,
}

impl Job<'_> {
    fn outputs(&self, stem: &Path) -> Vec<String> {
        let mut v = vec![output_name(stem, "_labels.tif")];
        if self.opts.measure {
            v.push(output_name(stem, "_objects.csv"));
        }
        if self.opts.save_flows {
            v.push(output_name(stem, "_flows.npy"));
        }
        v
    }

    /// Processes one image; `Ok` carries ok or skipped outcomes, `Err` the failure.
    fn run_one(&self, index: usize, input: &Input) -> Result<Outcome> {
        let t0 = Instant::now();
        let out = &self.opts.out;
        let sha = input.sha256()?;
        let rec_path = record_path(out, &input.stem);
        let record = read_record(&rec_path);
        let ours = record
            .as_ref()
            .is_some_and(|r| r.fingerprint == self.fingerprint && r.outcome.sha256 == sha);
        let outputs = self.outputs(&input.stem);
        if ours && !self.opts.overwrite {
            let r = record.as_ref().expect("checked");
            // A screen field whose plate-map columns changed is redone (its tables carry them).
            let finished = r.state == "done"
                && r.outcome.fields == input.fields
                && outputs.iter().all(|o| {
                    r.outcome
                        .outputs
                        .get(o)
                        .is_some_and(|want| sha256_file(&out.join(o)).is_ok_and(|h| h == *want))
                });
            if finished {
                let mut o = r.outcome.clone();
                o.status = "skipped".into();
                o.input = input.path.display().to_string();
                o.fields = input.fields.clone();
                return Ok(o);
            }
        }
        if !ours
            && !self.opts.overwrite
            && let Some(o) = outputs.iter().find(|o| out.join(o).exists())
        {
            let why = if record.is_some() {
                "was made from a different input file or with other settings"
            } else {
                "was not made by cytoseg segment (no record in .cytoseg/)"
            };
            return Err(Error::invalid(format!(
                "{} already exists and {why}: use --overwrite to replace it",
                out.join(o).display()
            )));
        }
        let mut outcome = Outcome {
            input: input.path.display().to_string(),
            status: "ok".into(),
            sha256: sha,
            fields: input.fields.clone(),
            channel_files: input
                .channels
                .iter()
                .map(|c| c.display().to_string())
                .collect(),
            ..Default::default()
        };
        write_json(
            &rec_path,
            &Record {
                state: "started".into(),
                fingerprint: self.fingerprint.clone(),
                outcome: outcome.clone(),
            },
        )?;
        let stack = input.read()?;
        let volume = self.volume_mode(&stack, &input.path)?;
        let labels_path = out.join(&outputs[0]);
        if let Some(dir) = labels_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let Segmented {
            labels,
            flows,
            counts,
            planes_qc,
            network,
        } = match &volume {
            Some((mode, _)) => self.segment_volume(&stack, *mode, &input.path)?,
            None => self.segment_stack(&stack, &input.path)?,
        };
        // 3-D outputs carry the z spacing they were measured with.
        let mut calibration = stack.calibration.clone();
        if let Some((_, z)) = volume {
            calibration.z_spacing = Some(z);
        }
        write_label_stack(
            &labels_path,
            &LabelStack {
                labels: &labels,
                planes: stack.planes.len(),
                height: stack.height,
                width: stack.width,
                plane_axes: &stack.plane_axes,
                calibration: &calibration,
            },
            true,
        )?;
        self.observer.output_written(index, &labels_path);
        if self.opts.measure {
            let csv = out.join(&outputs[1]);
            let table = match volume {
                Some((_, z)) => objects_table_3d(&stack, &labels, z)?,
                None => objects_table(&stack, &labels)?,
            };
            write_objects(&csv, &table, &input.fields)?;
            if let Some(c) = &self.opts.classifier {
                let stem = input.stem.display().to_string();
                let t = crate::classify::ObjectsTable::from_parts(&csv, &stem, &stack, &labels)?;
                crate::classify::apply_to_table(c, &t, &mut Default::default())?;
            }
            self.observer.output_written(index, &csv);
        }
        if let Some(fl) = flows {
            let fpath = out.join(outputs.last().expect("flows output"));
            let mut shape = vec![3, stack.height, stack.width];
            if let Some((VolumeMode::Flows3d { .. }, _)) = volume {
                // dZ, dY, dX, cellprob of the volume
                shape = vec![4, stack.planes.len(), stack.height, stack.width];
            } else if stack.planes.len() > 1 {
                shape.insert(0, stack.planes.len());
            }
            write_atomic(&fpath, true, |w| npy::write(w, &shape, fl))?;
            self.observer.output_written(index, &fpath);
        }
        outcome.planes = stack.planes.len();
        outcome.objects = counts.iter().map(|&c| c as u64).sum();
        let areas = match volume {
            Some((_, z)) => object_volumes(&labels, &stack, z),
            None => object_areas(&labels, &stack),
        };
        outcome.area = area_stats(&areas, &stack, if volume.is_some() { 3 } else { 2 });
        outcome.qc = qc::combine(&planes_qc, &areas, &network);
        for o in &outputs {
            outcome
                .outputs
                .insert(o.clone(), sha256_file(&out.join(o))?);
        }
        outcome.seconds = t0.elapsed().as_secs_f64();
        write_json(
            &rec_path,
            &Record {
                state: "done".into(),
                fingerprint: self.fingerprint.clone(),
                outcome: outcome.clone(),
            },
        )?;
        Ok(outcome)
    }

    /// The 3-D mode for a stack and the z spacing (in the stack's unit) its objects are
    /// measured with; `None` when the batch segments plane by plane. Refuses single planes and
    /// stacks whose planes are not one z series.
    fn volume_mode(&self, stack: &Stack, path: &Path) -> Result<Option<(VolumeMode, f64)>> {
        let what = match self.opts.stack_mode {
            StackMode::Planes => return Ok(None),
            StackMode::Flows3d { .. } => "3-D segmentation (do_3D)",
            StackMode::Stitch { .. } => "stitching",
        };
        let fail = |why: String| Error::format(path, why);
        match stack.plane_axes.as_slice() {
            [] => {
                return Err(fail(format!(
                    "is a 2-D image (1 plane): {what} needs a z-stack"
                )));
            }
            [('z', n)] if *n >= 2 => {}
            axes => {
                return Err(fail(format!(
                    "holds planes {}: {what} needs a single z series (one z-stack per file, no time points)",
                    crate::io::image::axes_text(axes)
                )));
            }
        }
        let cal = &stack.calibration;
        Ok(Some(match self.opts.stack_mode {
            StackMode::Flows3d { anisotropy } => {
                let a = crate::model::anisotropy_for(anisotropy, cal)
                    .map_err(|e| fail(e.to_string()))?;
                (
                    VolumeMode::Flows3d { anisotropy: a },
                    cal.z_spacing.unwrap_or(a * cal.pixel_width),
                )
            }
            StackMode::Stitch { threshold } => (
                VolumeMode::Stitch { threshold },
                cal.z_spacing.unwrap_or(cal.pixel_width),
            ),
            StackMode::Planes => return Ok(None),
        }))
    }

    /// Segments a z-stack into 3-D objects; one count and one network quality for the
    /// volume, QC measures per plane.
    fn segment_volume(&self, stack: &Stack, mode: VolumeMode, path: &Path) -> Result<Segmented> {
        let views: Vec<ImageView<'_>> = stack
            .planes
            .iter()
            .map(|p| p.view())
            .collect::<Result<_>>()?;
        let keep_going = |_: crate::model::Progress| !self.observer.cancelled();
        let mut params = self.params.clone();
        params.keep_flows = self.opts.save_flows;
        let seg = self
            .model
            .segment_volume(&views, &params, mode, Some(&keep_going))
            .map_err(|e| match e {
                Error::Cancelled => e,
                e => Error::invalid(format!("{}: {e}", path.display())),
            })?;
        let n = stack.width * stack.height;
        let planes_qc = views
            .iter()
            .zip(seg.labels.chunks(n))
            .map(|(view, l)| {
                qc::plane_measures(
                    &qc::qc_plane(view, &self.params.channels),
                    view.height,
                    view.width,
                    l,
                    view.type_max(),
                )
            })
            .collect();
        Ok(Segmented {
            labels: seg.labels,
            flows: seg.flows,
            counts: vec![seg.count],
            planes_qc,
            network: vec![seg.quality],
        })
    }

    /// Segments every plane, objects numbered per plane.
    fn segment_stack(&self, stack: &Stack, path: &Path) -> Result<Segmented> {
        let n = stack.width * stack.height;
        let mut labels = Vec::with_capacity(n * stack.planes.len());
        let mut flows = self.opts.save_flows.then(Vec::new);
        let mut counts = Vec::new();
        let mut planes_qc = Vec::new();
        let mut network = Vec::new();
        for (i, plane) in stack.planes.iter().enumerate() {
            let keep_going = |_: crate::model::Progress| !self.observer.cancelled();
            let view = plane.view()?;
            let seg = self
                .model
                .segment(&view, self.params, Some(&keep_going))
                .map_err(|e| {
                    if matches!(e, Error::Cancelled) {
                        return e;
                    }
                    let at = if stack.planes.len() > 1 {
                        format!(" (plane {i})")
                    } else {
                        String::new()
                    };
                    Error::invalid(format!("{}{at}: {e}", path.display()))
                })?;
            planes_qc.push(qc::plane_measures(
                &qc::qc_plane(&view, &self.params.channels),
                view.height,
                view.width,
                &seg.labels,
                view.type_max(),
            ));
            network.push(seg.quality.clone());
            labels.extend_from_slice(&seg.labels);
            counts.push(seg.count);
            if let (Some(f), Some(fl)) = (flows.as_mut(), &seg.flows) {
                for c in fl {
                    f.extend_from_slice(c);
                }
            }
        }
        Ok(Segmented {
            labels,
            flows,
            counts,
            planes_qc,
            network,
        })
    }
}

/// The calibrated area of every object of every plane.
fn object_areas(labels: &[u32], stack: &Stack) -> Vec<f64> {
    let n = stack.width * stack.height;
    let cal = &stack.calibration;
    let px = cal.pixel_width * cal.pixel_height;
    let mut areas: Vec<f64> = Vec::new();
    for plane in labels.chunks(n.max(1)) {
        let max = plane.iter().copied().max().unwrap_or(0) as usize;
        let mut count = vec![0u64; max + 1];
        for &l in plane {
            count[l as usize] += 1;
        }
        areas.extend(
            count[1..]
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| c as f64 * px),
        );
    }
    areas
}

/// The calibrated volume of every 3-D object (`z_spacing` in the stack's unit).
fn object_volumes(labels: &[u32], stack: &Stack, z_spacing: f64) -> Vec<f64> {
    let cal = &stack.calibration;
    let voxel = cal.pixel_width * cal.pixel_height * z_spacing;
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut count = vec![0u64; max + 1];
    for &l in labels {
        count[l as usize] += 1;
    }
    count[1..]
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 * voxel)
        .collect()
}

/// Statistics of the objects' areas (`power` 2) or volumes (3), in the stack's unit.
fn area_stats(areas: &[f64], stack: &Stack, power: u32) -> AreaStats {
    let mut areas = areas.to_vec();
    let unit = format!("{}^{power}", stack.calibration.unit);
    if areas.is_empty() {
        return AreaStats {
            unit,
            ..Default::default()
        };
    }
    areas.sort_by(f64::total_cmp);
    let k = areas.len();
    let median = if k % 2 == 1 {
        areas[k / 2]
    } else {
        (areas[k / 2 - 1] + areas[k / 2]) / 2.0
    };
    AreaStats {
        mean: areas.iter().sum::<f64>() / k as f64,
        median,
        min: areas[0],
        max: areas[k - 1],
        unit,
    }
}

/// Removes temporary files that an interrupted run left behind (`.NAME.tmp-PID` of
/// [`write_atomic`], from a process that no longer exists) in the folders this batch writes to.
/// Only where process ids can be checked (`/proc`).
fn remove_stale_temps(out: &Path, inputs: &[Input]) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let mut dirs: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
    for i in inputs {
        for base in [out.to_path_buf(), out.join(".cytoseg")] {
            let p = base.join(&i.stem);
            dirs.insert(p.parent().map(Path::to_path_buf).unwrap_or(base));
        }
    }
    let me = std::process::id().to_string();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((_, pid)) = name.rsplit_once(".tmp-") else {
                continue;
            };
            let stale = name.starts_with('.')
                && !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && pid != me
                && !Path::new("/proc").join(pid).exists();
            if stale && std::fs::remove_file(e.path()).is_ok() {
                log::info!(
                    "removed {} (left by an interrupted run)",
                    e.path().display()
                );
            }
        }
    }
}

/// Runs the batch: every input through segmentation (and measurement), `opts.jobs` at a time
/// within the memory budget, reporting to `observer`. Returns one outcome per input, in input
/// order. Writes no summary: see [`segment_folder`] for the whole run.
pub fn run_batch(
    model: &Model,
    params: &SegmentParams,
    inputs: &[Input],
    opts: &BatchOptions,
    observer: &dyn Observer,
) -> Vec<Outcome> {
    let params = &*run_params(params, opts);
    let job = Job {
        model,
        params,
        opts,
        fingerprint: fingerprint(model, params, opts),
        observer,
    };
    let budget = Budget {
        total: opts.memory_budget.max(1),
        used: Mutex::new(0),
        freed: Condvar::new(),
    };
    remove_stale_temps(&opts.out, inputs);
    let total = inputs.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; inputs.len()]);
    let cancelled_outcome = |input: &Input| Outcome {
        input: input.path.display().to_string(),
        status: "cancelled".into(),
        fields: input.fields.clone(),
        ..Default::default()
    };
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1).min(inputs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(input) = inputs.get(i) else { break };
                    let outcome = if observer.cancelled() {
                        cancelled_outcome(input)
                    } else {
                        let reserved = budget.acquire(input.estimate(opts.stack_mode.is_3d()));
                        observer.image_started(i, input);
                        let t0 = Instant::now();
                        let outcome = match job.run_one(i, input) {
                            Ok(o) => o,
                            Err(Error::Cancelled) => cancelled_outcome(input),
                            Err(e) => {
                                log::error!("{}: {e}", input.path.display());
                                Outcome {
                                    input: input.path.display().to_string(),
                                    status: "failed".into(),
                                    error: e.to_string(),
                                    sha256: input.sha256().unwrap_or_default(),
                                    fields: input.fields.clone(),
                                    seconds: t0.elapsed().as_secs_f64(),
                                    ..Default::default()
                                }
                            }
                        };
                        budget.release(reserved);
                        outcome
                    };
                    let k = done.fetch_add(1, Ordering::SeqCst) + 1;
                    observer.image_finished(i, &outcome, k, total);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|o| o.unwrap_or_default())
        .collect()
}

/// Images by status at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Segmented in this run.
    pub ok: usize,
    /// Finished by an earlier run (outputs intact).
    pub skipped: usize,
    /// Failed (the error is in `summary.csv` and the outcome).
    pub failed: usize,
    /// Not finished because the run was cancelled.
    pub cancelled: usize,
}

impl Counts {
    /// Counts the outcomes by status.
    pub fn of(outcomes: &[Outcome]) -> Self {
        let count = |s: &str| outcomes.iter().filter(|o| o.status == s).count();
        Counts {
            ok: count("ok"),
            skipped: count("skipped"),
            failed: count("failed"),
            cancelled: count("cancelled"),
        }
    }
}

/// A finished run: every image's outcome (input order), the counts and the run's duration.
#[derive(Debug, Clone)]
pub struct Report {
    /// One outcome per input, in input order.
    pub outcomes: Vec<Outcome>,
    /// Images by status.
    pub counts: Counts,
    /// Wall time of the run in seconds.
    pub seconds: f64,
}

/// A whole run over an output folder: creates it, runs [`run_batch`], then writes
/// `summary.csv` and `run.json` (also when cancelled: they then list the cancelled images;
/// not with `run_files` off).
/// `inputs` come from [`expand_inputs`]. Errors only when the run cannot start or its summary
/// cannot be written; failed images are in the report.
pub fn segment_folder(
    model: &Model,
    params: &SegmentParams,
    inputs: &[Input],
    opts: &BatchOptions,
    observer: &dyn Observer,
) -> Result<Report> {
    if inputs.is_empty() {
        return Err(Error::invalid("no input images found"));
    }
    let params = &*run_params(params, opts);
    // a precision the model cannot run is the run's error, not every image's
    model.precision_for(params)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let started = utc_now();
    let t0 = Instant::now();
    let outcomes = run_batch(model, params, inputs, opts, observer);
    let seconds = t0.elapsed().as_secs_f64();
    let m = manifest(
        model,
        params,
        opts,
        &outcomes,
        &started,
        &utc_now(),
        seconds,
    );
    if opts.run_files {
        write_run_files(&opts.out, &outcomes, &m)?;
        crate::screen::wells::write_wells_csv(&opts.out, &outcomes)?;
        if let Some(c) = &opts.classifier {
            crate::screen::classes::write_class_fractions(&opts.out, &c.classes)?;
        }
        let tables: Vec<PathBuf> = outcomes
            .iter()
            .filter(|o| o.status == "ok" || o.status == "skipped")
            .flat_map(|o| o.outputs.keys().filter(|k| k.ends_with("_objects.csv")))
            .map(|k| opts.out.join(k))
            .collect();
        crate::screen::readouts::write_readouts(&opts.out, &tables, &opts.readouts)?;
    }
    Ok(Report {
        counts: Counts::of(&outcomes),
        outcomes,
        seconds,
    })
}

/// What [`segment_folder_on_caller_thread`] hands the caller.
#[derive(Debug)]
pub enum Event<'a> {
    /// An image finished: its outcome, how many are done, of how many.
    Finished {
        /// The outcome.
        outcome: &'a Outcome,
        /// Images finished so far.
        done: usize,
        /// Images in the run.
        total: usize,
    },
    /// Nothing finished for a while (sent once before any image starts, then about every
    /// 100 ms): a chance to cancel.
    Waiting,
}

/// Turns [`Event`]s into what hosts show: `(done, total, line)`, where `line` is the finished
/// image's [`outcome_line`], or `None` for [`Event::Waiting`] (with the last counts).
#[derive(Debug, Clone, Copy)]
pub struct EventLines {
    done: usize,
    total: usize,
}

impl EventLines {
    /// For a run of `total` images.
    pub fn new(total: usize) -> Self {
        EventLines { done: 0, total }
    }

    /// The counts and line of one event.
    pub fn next(&mut self, e: Event<'_>) -> (usize, usize, Option<String>) {
        match e {
            Event::Waiting => (self.done, self.total, None),
            Event::Finished {
                outcome,
                done,
                total,
            } => {
                (self.done, self.total) = (done, total);
                (done, total, Some(outcome_line(outcome, done, total)))
            }
        }
    }
}

/// [`segment_folder`], with every event delivered on the calling thread (the work runs on
/// other threads): for hosts whose callbacks must stay on one thread (a JVM, a GUI, Python).
/// `handler` returns `false` to cancel the run. Its first call, an [`Event::Waiting`], comes
/// before any image starts, so a host that cancels at once cancels every image, however fast
/// the first one would have been.
pub fn segment_folder_on_caller_thread(
    model: &Model,
    params: &SegmentParams,
    inputs: &[Input],
    opts: &BatchOptions,
    handler: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<Report> {
    struct Relay {
        tx: Mutex<std::sync::mpsc::Sender<(Outcome, usize, usize)>>,
        cancel: AtomicBool,
    }
    impl Observer for Relay {
        fn image_finished(&self, _i: usize, o: &Outcome, done: usize, total: usize) {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let _ = tx.send((o.clone(), done, total));
        }
        fn cancelled(&self) -> bool {
            self.cancel.load(Ordering::SeqCst)
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let relay = Relay {
        tx: Mutex::new(tx),
        cancel: AtomicBool::new(!handler(Event::Waiting)),
    };
    std::thread::scope(|s| {
        let work = s.spawn(|| segment_folder(model, params, inputs, opts, &relay));
        loop {
            let keep_going = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((o, done, total)) => handler(Event::Finished {
                    outcome: &o,
                    done,
                    total,
                }),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if work.is_finished() {
                        // Deliver anything sent just before the end, then stop.
                        while let Ok((o, done, total)) = rx.try_recv() {
                            handler(Event::Finished {
                                outcome: &o,
                                done,
                                total,
                            });
                        }
                        break;
                    }
                    handler(Event::Waiting)
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if !keep_going {
                relay.cancel.store(true, Ordering::SeqCst);
            }
        }
        work.join()
            .unwrap_or_else(|_| Err(Error::Runtime("the batch worker panicked".into())))
    })
}

/// `summary.csv`: one row per image, then its QC measures ([`crate::qc::MEASURES`]; an empty
/// cell where a measure is undefined).
pub fn summary_csv(outcomes: &[Outcome]) -> String {
    let screen = outcomes.iter().any(|o| !o.fields.is_empty());
    let lead = if screen {
        crate::screen::table_columns(outcomes.iter().map(|o| &o.fields))
    } else {
        Vec::new()
    };
    let mut s = String::from("file");
    for c in &lead {
        s.push(',');
        s += &csv_field(c);
    }
    s += ",status,error,planes,objects,area_mean,area_median,area_min,area_max,area_unit,seconds,sha256";
    for m in qc::MEASURES {
        s.push(',');
        s += m.name;
    }
    s.push('\n');
    for o in outcomes {
        let num = |v: f64| {
            if o.objects > 0 {
                format!("{v}")
            } else {
                String::new()
            }
        };
        s += &csv_field(&o.input);
        for c in &lead {
            s.push(',');
            s += &csv_field(o.fields.get(c).map(String::as_str).unwrap_or(""));
        }
        s += &format!(
            ",{},{},{},{},{},{},{},{},{},{:.3},{}",
            o.status,
            csv_field(&o.error),
            o.planes,
            o.objects,
            num(o.area.mean),
            num(o.area.median),
            num(o.area.min),
            num(o.area.max),
            csv_field(&o.area.unit),
            o.seconds,
            o.sha256
        );
        for v in o.qc.values() {
            s.push(',');
            if v.is_finite() {
                s += &format!("{v}");
            }
        }
        s.push('\n');
    }
    s
}

/// Writes `summary.csv` and `run.json` into the output folder (replacing those of an earlier
/// run: they describe the latest run, finished images included).
pub fn write_run_files(
    out: &Path,
    outcomes: &[Outcome],
    manifest: &serde_json::Value,
) -> Result<()> {
    let summary = out.join("summary.csv");
    let text = summary_csv(outcomes);
    write_atomic(&summary, true, |w| {
        w.write_all(text.as_bytes())
            .map_err(|e| Error::io(&summary, e))
    })?;
    write_json(&out.join("run.json"), manifest)
}

/// The run manifest (`run.json`).
#[allow(clippy::too_many_arguments)]
pub fn manifest(
    model: &Model,
    params: &SegmentParams,
    opts: &BatchOptions,
    outcomes: &[Outcome],
    started: &str,
    finished: &str,
    seconds: f64,
) -> serde_json::Value {
    let counts = Counts::of(outcomes);
    serde_json::json!({
        "cytoseg_version": ENGINE_VERSION,
        "command": opts.invocation,
        "started_utc": started,
        "finished_utc": finished,
        "seconds": seconds,
        "model": {
            "name": model.manifest.name,
            "version": model.manifest.version,
            "family": model.manifest.family,
            "sha256": model.manifest.model.sha256.to_ascii_lowercase(),
            "path": model.dir.display().to_string(),
        },
        "onnx_runtime": {
            "version": model.runtime.version,
            "library": model.runtime.library.display().to_string(),
            "provider": model.device.name(),
        },
        "parameters": params_json(model, params),
        "options": {
            "out": opts.out.display().to_string(),
            "jobs": opts.jobs,
            "memory_budget_bytes": opts.memory_budget,
            "overwrite": opts.overwrite,
            "objects_csv": opts.measure,
            "save_flows": opts.save_flows,
            "stacks": opts.stack_mode.to_json(),
        },
        "counts": {
            "images": outcomes.len(),
            "ok": counts.ok,
            "skipped": counts.skipped,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
        },
        "images": outcomes.iter().map(|o| serde_json::json!({
            "input": o.input,
            "sha256": o.sha256,
            "status": o.status,
            "error": o.error,
            "planes": o.planes,
            "objects": o.objects,
            "outputs": o.outputs,
            "seconds": o.seconds,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_blocks_until_memory_is_released() {
        let b = Budget {
            total: 100,
            used: Mutex::new(0),
            freed: Condvar::new(),
        };
        let first = b.acquire(70);
        let peak = AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Waits for the first reservation to go: 70 + 60 > 100.
                let r = b.acquire(60);
                peak.store(*b.used.lock().unwrap() as usize, Ordering::SeqCst);
                b.release(r);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(*b.used.lock().unwrap(), 70, "second image not admitted");
            b.release(first);
        });
        assert_eq!(peak.load(Ordering::SeqCst), 60);
        // An image larger than the whole budget runs alone.
        assert_eq!(b.acquire(500), 100);
    }

    #[test]
    fn folders_mirror_sub_folders_and_clashes_are_refused() {
        let dir = std::env::temp_dir().join(format!("cytoseg-expand-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in [
            "in/a.tif",
            "in/sub/a.tif",
            "in/sub/b.png",
            "in/notes.txt",
            "in/out/x.tif",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let out = dir.join("in/out");
        let arg = |p: &str| dir.join(p).display().to_string();
        let flat = expand_inputs(&[arg("in")], false, &out).unwrap();
        assert_eq!(flat.len(), 1);
        let deep = expand_inputs(&[arg("in")], true, &out).unwrap();
        let stems: Vec<String> = deep.iter().map(|i| i.stem.display().to_string()).collect();
        assert_eq!(
            stems,
            ["a", "sub/a", "sub/b"],
            "the output folder is left out"
        );
        // The same file twice counts once; two files with one stem are refused.
        assert_eq!(
            expand_inputs(&[arg("in/a.tif"), arg("in/*.tif")], false, &out)
                .unwrap()
                .len(),
            1
        );
        let e = expand_inputs(&[arg("in/a.tif"), arg("in/sub/a.tif")], false, &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("would write the same outputs"), "{e}");
        assert!(expand_inputs(&[arg("in/none*.tif")], false, &out).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn utc_timestamps_are_rfc3339() {
        let t = utc_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
