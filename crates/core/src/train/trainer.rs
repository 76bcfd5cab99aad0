//! The training loop: a parent package in, a new package (the clone) out.
//!
//! [`train`] checks every input before it writes anything, trains the parent's network on the
//! user's image/label pairs with Cellpose's loss and the recipe of `models/nuclei/train`
//! (random crops with rotation, flips and scale jitter, intensity augmentation, AdamW with
//! warm-up and cosine decay, batch norm in training mode), saves a checkpoint now and then
//! (and when cancelled) so that a run can be resumed, and finally writes the clone's
//! `model.onnx` (the parent's graph with the new weights), `manifest.json` with the lineage,
//! `MODEL_CARD.md`, `loss.csv` and `loss.png`. The parent is only read.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value as Json, json};

use super::data::{self, Pair, Sample};
use super::net::{Net, Value};
use super::onnx;
use super::optim::{self, AdamW};
use super::report::{self, LossPoint};
use super::rng::Rng;
use crate::error::{Error, Result};
use crate::model::manifest::{Manifest, sha256_hex};

/// Name of the checkpoint file inside the output folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.cytoseg-train";

/// Training options. [`TrainOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The parent model package folder (resolve names with `model::registry` first).
    pub from: PathBuf,
    /// Folder of training images.
    pub images: PathBuf,
    /// Folder of label images (paired by stem).
    pub labels: PathBuf,
    /// Folder of annotated-region masks (optional; see [`data::find_pairs`]).
    pub masks: Option<PathBuf>,
    /// Validation images and labels (optional; without them one image in ten is held out
    /// when there are at least ten).
    pub val_images: Option<PathBuf>,
    /// Validation labels.
    pub val_labels: Option<PathBuf>,
    /// The new package's folder (must not hold a package already).
    pub out: PathBuf,
    /// Training steps (the schedule's length).
    pub steps: usize,
    /// Optional wall-time budget in minutes: the schedule follows whichever of steps and time
    /// runs out first.
    pub minutes: Option<f64>,
    /// Crops per step.
    pub batch_size: usize,
    /// Crop edge in pixels (a multiple of 16).
    pub crop: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay (filters and dense weights only).
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Scale jitter: each crop is resized by a log-uniform factor in this range.
    pub scale_range: (f64, f64),
    /// Typical object diameter in the training images (pixels); `None`: measured from the
    /// labels (median, as Cellpose's `diameters`).
    pub diameter: Option<f64>,
    /// Object diameter the clone's network sees (its manifest `diameter`); `None`:
    /// [`default_train_diameter`] of the parent's and the objects' diameters.
    pub train_diameter: Option<f64>,
    /// Input channels of the clone; `None`: automatic (3 for a one-channel parent and colour
    /// training images, else the parent's). A one-channel parent can be widened (see
    /// [`Net::widen_input`]): for colour or multi-channel images.
    pub channels: Option<usize>,
    /// Seconds between checkpoints.
    pub checkpoint_every_s: f64,
    /// Continue from the checkpoint in `out`.
    pub resume: bool,
    /// The clone's name (default: the output folder's name).
    pub name: Option<String>,
    /// The clone's version.
    pub version: String,
    /// The command line or call that started the run, recorded in the lineage.
    pub command: String,
}

impl TrainOptions {
    /// The defaults for training `from` on `images`/`labels` into `out`.
    pub fn new(from: &Path, images: &Path, labels: &Path, out: &Path) -> Self {
        TrainOptions {
            from: from.to_path_buf(),
            images: images.to_path_buf(),
            labels: labels.to_path_buf(),
            masks: None,
            val_images: None,
            val_labels: None,
            out: out.to_path_buf(),
            steps: 1000,
            minutes: None,
            batch_size: 8,
            crop: 128,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            warmup: 100,
            seed: 0,
            scale_range: (0.75, 1.33),
            diameter: None,
            train_diameter: None,
            channels: None,
            checkpoint_every_s: 120.0,
            resume: false,
            name: None,
            version: "1.0.0".into(),
            command: String::new(),
        }
    }

    /// Names of the numeric options, in the order of [`TrainOptions::numeric`] and
    /// [`TrainOptions::set_numeric`] (the one list the JNI face and its Java side share).
    /// `minutes`, `diameter`, `train_diameter` and `channels` are 0 when unset.
    pub const NUMERIC_FIELDS: [&'static str; 10] = [
        "steps",
        "minutes",
        "batch_size",
        "crop",
        "learning_rate",
        "weight_decay",
        "diameter",
        "train_diameter",
        "seed",
        "channels",
    ];

    /// The numeric options in the order of [`TrainOptions::NUMERIC_FIELDS`].
    pub fn numeric(&self) -> [f64; 10] {
        [
            self.steps as f64,
            self.minutes.unwrap_or(0.0),
            self.batch_size as f64,
            self.crop as f64,
            self.learning_rate,
            self.weight_decay,
            self.diameter.unwrap_or(0.0),
            self.train_diameter.unwrap_or(0.0),
            self.seed as f64,
            self.channels.unwrap_or(0) as f64,
        ]
    }

    /// Sets the numeric options from values in the order of [`TrainOptions::NUMERIC_FIELDS`]
    /// (0 unsets `minutes`, `diameter`, `train_diameter` and `channels`); counts must be whole and
    /// non-negative.
    pub fn set_numeric(&mut self, v: &[f64]) -> Result<()> {
        if v.len() != Self::NUMERIC_FIELDS.len() {
            return Err(Error::invalid(format!(
                "{} training option values, expected {} ({})",
                v.len(),
                Self::NUMERIC_FIELDS.len(),
                Self::NUMERIC_FIELDS.join(", ")
            )));
        }
        let count = |i: usize| -> Result<usize> {
            let x = v[i];
            if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 1e15 {
                Ok(x as usize)
            } else {
                Err(Error::invalid(format!(
                    "{} = {x} is not a whole non-negative number",
                    Self::NUMERIC_FIELDS[i]
                )))
            }
        };
        let opt = |x: f64| (x != 0.0).then_some(x);
        self.steps = count(0)?;
        self.minutes = opt(v[1]);
        self.batch_size = count(2)?;
        self.crop = count(3)?;
        self.learning_rate = v[4];
        self.weight_decay = v[5];
        self.diameter = opt(v[6]);
        self.train_diameter = opt(v[7]);
        self.seed = count(8)? as u64;
        self.channels = Some(count(9)?).filter(|&c| c > 0);
        Ok(())
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if self.batch_size == 0 || self.batch_size > 256 {
            return bad(format!("batch size {} is not in 1..=256", self.batch_size));
        }
        if self.crop < 32 || !self.crop.is_multiple_of(16) || self.crop > 1024 {
            return bad(format!(
                "crop {} must be a multiple of 16 in 32..=1024",
                self.crop
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0)
        {
            return bad(format!(
                "learning rate {} is not in (0, 1)",
                self.learning_rate
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay {} is negative or not finite",
                self.weight_decay
            ));
        }
        let (a, b) = self.scale_range;
        if !(a.is_finite() && b.is_finite() && 0.0 < a && a <= b && b < 10.0) {
            return bad(format!(
                "scale range ({a}, {b}) must satisfy 0 < min <= max < 10"
            ));
        }
        for (what, d) in [
            ("diameter", self.diameter),
            ("training diameter", self.train_diameter),
        ] {
            if let Some(d) = d
                && !(d.is_finite() && (1.0..=10_000.0).contains(&d))
            {
                return bad(format!("{what} {d} is not in 1..=10000 pixels"));
            }
        }
        if let Some(m) = self.minutes
            && !(m.is_finite() && m > 0.0)
        {
            return bad(format!("minutes {m} must be positive"));
        }
        if self.val_images.is_some() != self.val_labels.is_some() {
            return bad("validation images and validation labels go together".into());
        }
        Ok(())
    }
}

/// Where a run stands, reported to the caller after each step.
#[derive(Debug, Clone)]
pub struct TrainProgress {
    /// Steps done.
    pub step: usize,
    /// Steps planned.
    pub steps: usize,
    /// Mean training loss of the last few steps.
    pub loss: f64,
    /// Latest validation loss.
    pub val_loss: Option<f64>,
    /// Current learning rate.
    pub lr: f64,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
    /// Estimated seconds left.
    pub eta_s: f64,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The new package folder.
    pub out: PathBuf,
    /// Steps in all (over resumptions).
    pub steps: usize,
    /// Mean training loss of the last steps.
    pub final_train_loss: f64,
    /// Final validation loss.
    pub final_val_loss: Option<f64>,
    /// Object diameter of the training images (measured or given).
    pub diameter: f64,
    /// Training images, validation images.
    pub images: (usize, usize),
    /// Wall time of this call in seconds.
    pub wall_s: f64,
}

struct Loaded {
    manifest: Manifest,
    manifest_json: Json,
    onnx: Vec<u8>,
    onnx_sha: String,
}

fn load_parent(dir: &Path) -> Result<Loaded> {
    let mpath = dir.join("manifest.json");
    let manifest = Manifest::read(&mpath)?;
    if manifest.family != "cellpose-flows" {
        return Err(Error::invalid(format!(
            "{}: model family {:?} cannot be trained (only cellpose-flows)",
            dir.display(),
            manifest.family
        )));
    }
    let raw = crate::io::limits::read_file(
        &mpath,
        "model manifest",
        crate::io::limits::MAX_MANIFEST_BYTES,
    )?;
    let manifest_json: Json =
        serde_json::from_slice(&raw).map_err(|e| Error::format(&mpath, e.to_string()))?;
    let opath = manifest.onnx_path(dir);
    let onnx = crate::io::limits::read_file(
        &opath,
        "the ONNX network",
        crate::io::limits::max_decoded_bytes(),
    )?;
    let onnx_sha = sha256_hex(&onnx);
    if onnx_sha != manifest.model.sha256.to_ascii_lowercase() {
        return Err(Error::Model(format!(
            "{}: sha256 {onnx_sha} differs from the manifest's {}",
            opath.display(),
            manifest.model.sha256
        )));
    }
    Ok(Loaded {
        manifest,
        manifest_json,
        onnx,
        onnx_sha,
    })
}

fn file_record(p: &Pair) -> Result<Json> {
    let sha = |path: &Path| -> Result<String> {
        Ok(sha256_hex(
            &std::fs::read(path).map_err(|e| Error::io(path, e))?,
        ))
    };
    let mut r = json!({
        "image": p.image.display().to_string(),
        "image_sha256": sha(&p.image)?,
        "labels": p.labels.display().to_string(),
        "labels_sha256": sha(&p.labels)?,
    });
    if let Some(m) = &p.mask {
        r["mask"] = json!(m.display().to_string());
        r["mask_sha256"] = json!(sha(m)?);
    }
    Ok(r)
}

/// Everything saved in a checkpoint.
struct Checkpoint {
    step: usize,
    rng: [u64; 4],
    adam_t: u64,
    history: Vec<LossPoint>,
    elapsed_s: f64,
    key: String,
    params: Vec<Vec<f32>>,
    buffers: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

fn write_checkpoint(path: &Path, c: &Checkpoint) -> Result<()> {
    let header = json!({
        "format": "cytoseg-train-checkpoint/1",
        "step": c.step,
        "rng": c.rng.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        "adam_t": c.adam_t,
        "elapsed_s": c.elapsed_s,
        "key": c.key,
        "history": c.history.iter().map(|p| json!([p.step, p.train_loss, p.val_loss, p.lr, p.elapsed_s])).collect::<Vec<_>>(),
        "sizes": [c.params.iter().map(Vec::len).collect::<Vec<_>>(), c.buffers.iter().map(Vec::len).collect::<Vec<_>>()],
    });
    let head = serde_json::to_vec(&header).map_err(|e| Error::invalid(e.to_string()))?;
    crate::io::write_atomic(path, true, |w| {
        use std::io::Write;
        let mut put = |b: &[u8]| w.write_all(b).map_err(|e| Error::io(path, e));
        put(&(head.len() as u64).to_le_bytes())?;
        put(&head)?;
        for group in [&c.params, &c.buffers, &c.m, &c.v] {
            for t in group.iter() {
                let bytes: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
                put(&bytes)?;
            }
        }
        Ok(())
    })
}

fn read_checkpoint(
    path: &Path,
    param_sizes: &[usize],
    buffer_sizes: &[usize],
) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let broken = |m: &str| Error::format(path, format!("not a usable training checkpoint: {m}"));
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or_else(|| broken("truncated"))?
            .try_into()
            .expect("8 bytes"),
    ) as usize;
    let head = bytes
        .get(8..8usize.saturating_add(n))
        .ok_or_else(|| broken("truncated header"))?;
    let h: Json = serde_json::from_slice(head).map_err(|_| broken("bad header"))?;
    if h["format"] != "cytoseg-train-checkpoint/1" {
        return Err(broken("unknown format"));
    }
    let sizes: Vec<usize> = param_sizes
        .iter()
        .chain(buffer_sizes)
        .chain(param_sizes)
        .chain(param_sizes)
        .copied()
        .collect();
    let total: usize = sizes.iter().sum();
    let body = &bytes[8 + n..];
    if body.len() != total * 4 {
        return Err(broken("its tensors do not match this model's network"));
    }
    let mut off = 0;
    let mut tensors: Vec<Vec<f32>> = Vec::with_capacity(sizes.len());
    for s in sizes {
        tensors.push(
            body[off..off + 4 * s]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
        off += 4 * s;
    }
    let np = param_sizes.len();
    let nb = buffer_sizes.len();
    let v = tensors.split_off(2 * np + nb);
    let m = tensors.split_off(np + nb);
    let buffers = tensors.split_off(np);
    let rng: Vec<u64> = h["rng"]
        .as_array()
        .ok_or_else(|| broken("rng"))?
        .iter()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect();
    let history = h["history"]
        .as_array()
        .ok_or_else(|| broken("history"))?
        .iter()
        .map(|p| LossPoint {
            step: p[0].as_u64().unwrap_or(0) as usize,
            train_loss: p[1].as_f64().unwrap_or(f64::NAN),
            val_loss: p[2].as_f64(),
            lr: p[3].as_f64().unwrap_or(0.0),
            elapsed_s: p[4].as_f64().unwrap_or(0.0),
        })
        .collect();
    Ok(Checkpoint {
        step: h["step"].as_u64().ok_or_else(|| broken("step"))? as usize,
        rng: rng.try_into().map_err(|_| broken("rng"))?,
        adam_t: h["adam_t"].as_u64().unwrap_or(0),
        history,
        elapsed_s: h["elapsed_s"].as_f64().unwrap_or(0.0),
        key: h["key"].as_str().unwrap_or("").to_string(),
        params: tensors,
        buffers,
        m,
        v,
    })
}

/// Fixed validation crops (no augmentation), evaluated in inference mode.
fn val_loss(net: &mut Net, batches: &[data::Batch], flow_scale: f32) -> Result<Option<f64>> {
    if batches.is_empty() {
        return Ok(None);
    }
    let mut sum = 0.0;
    for b in batches {
        let tape = net.forward(
            Value {
                shape: vec![b.n, b.channels, b.size, b.size],
                data: b.x.clone(),
            },
            false,
        )?;
        let y = &tape.output(net).data;
        sum += optim::cellpose_loss(
            y,
            &b.flows,
            &b.cellprob,
            &b.weight,
            b.n,
            b.size * b.size,
            flow_scale,
        )
        .value;
        net.recycle(tape);
    }
    Ok(Some(sum / batches.len() as f64))
}

fn load_samples(pairs: &[Pair], c_in: usize, m: &Manifest, rescale: f64) -> Result<Vec<Sample>> {
    use rayon::prelude::*;
    pairs
        .par_iter()
        .map(|p| data::load_sample(p, c_in, &m.normalization, rescale))
        .collect()
}

/// The clone's input channels when none are given: 3 when the parent takes one channel and
/// every training image is colour (3 channels: RGB histology, brightfield saved as RGB), so
/// that the stain colours reach the network (on DSB2018 histology AP@0.5 0.728 with 3
/// channels against 0.678 with their mean); otherwise the parent's. A widened network starts
/// out computing exactly its parent on images whose channels are equal.
fn automatic_channels(parent: usize, pairs: &[Pair]) -> Result<usize> {
    use rayon::prelude::*;
    if parent != 1 || pairs.is_empty() {
        return Ok(parent);
    }
    let colour: Vec<bool> = pairs
        .par_iter()
        .map(|p| Ok(crate::io::image::read_image(&p.image)?.channels == 3))
        .collect::<Result<_>>()?;
    Ok(if colour.iter().all(|&c| c) { 3 } else { parent })
}

/// Cellpose's scale for whole cells: objects are seen at 30 px by its cell models.
pub const CELL_SCALE: f64 = 30.0;

/// The diameter a clone's network works at when none is given: the objects' own diameter,
/// but never below the parent's (small objects are enlarged to the scale the parent knows)
/// nor above [`CELL_SCALE`] (large objects such as whole cells are shrunk to Cellpose's cell
/// scale, not to the parent's nuclear one, so that their outlines keep detail: on the
/// Usiigaci phase-contrast cells, 56 px across, AP@0.5 0.808 at 30 px against 0.774 at the
/// nuclei parent's 17 px).
pub fn default_train_diameter(parent: f64, objects: f64) -> f64 {
    objects.min(CELL_SCALE).max(parent)
}

/// Trains a clone of `opts.from` and writes it to `opts.out`. `progress` is called after
/// every step; returning `false` cancels: the run saves a checkpoint (resume with
/// `opts.resume`) and returns [`Error::Cancelled`].
pub fn train(
    opts: &TrainOptions,
    progress: &mut dyn FnMut(&TrainProgress) -> bool,
) -> Result<TrainReport> {
    let t_call = Instant::now();
    opts.check()?;
    let parent = load_parent(&opts.from)?;
    let m = &parent.manifest;
    let mut net = Net::from_onnx(&parent.onnx)?;
    if net.in_channels != m.input.channels || net.out_channels != 3 {
        return Err(Error::Model(format!(
            "the network takes {} channel(s) and gives {}; the manifest says {} and 3",
            net.in_channels, net.out_channels, m.input.channels
        )));
    }
    let parent_channels = net.in_channels;
    // the output folder: new, or holding only a checkpoint when resuming
    let ckpt_path = opts.out.join(CHECKPOINT_FILE);
    for f in ["manifest.json", "model.onnx"] {
        if opts.out.join(f).exists() {
            return Err(Error::invalid(format!(
                "{} already holds a model package ({f}); choose a new --out folder",
                opts.out.display()
            )));
        }
    }
    if opts.resume && !ckpt_path.exists() {
        return Err(Error::invalid(format!(
            "nothing to resume: {} does not exist",
            ckpt_path.display()
        )));
    }
    if !opts.resume && ckpt_path.exists() {
        return Err(Error::invalid(format!(
            "{} holds a checkpoint of an earlier run: resume it (--resume) or choose a new --out folder",
            opts.out.display()
        )));
    }
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => opts
            .out
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{} has no folder name for the clone",
                    opts.out.display()
                ))
            })?,
    };
    if opts.out.canonicalize().ok() == opts.from.canonicalize().ok() {
        return Err(Error::invalid(
            "the output folder is the parent package's folder: training never modifies its parent"
                .to_string(),
        ));
    }

    // data: pairs, diameter, samples
    let mut train_pairs = data::find_pairs(&opts.images, &opts.labels, opts.masks.as_deref())?;
    let mut val_pairs = match (&opts.val_images, &opts.val_labels) {
        (Some(i), Some(l)) => data::find_pairs(i, l, None)?,
        _ => Vec::new(),
    };
    let held_out = val_pairs.is_empty() && train_pairs.len() >= 10;
    if held_out {
        let mut k = 0;
        let (tr, va): (Vec<Pair>, Vec<Pair>) = train_pairs.drain(..).partition(|_| {
            k += 1;
            k % 10 != 0
        });
        train_pairs = tr;
        val_pairs = va;
    }
    let channels = match opts.channels {
        Some(c) => c,
        None => automatic_channels(parent_channels, &train_pairs)?,
    };
    if channels != parent_channels {
        net.widen_input(channels)?;
    }
    let mut label_maps = Vec::with_capacity(train_pairs.len());
    for p in &train_pairs {
        label_maps.push(crate::io::labels::read_labels(&p.labels)?.0);
    }
    let measured = data::median_diameter(label_maps.iter().map(Vec::as_slice));
    drop(label_maps);
    let diameter = match (opts.diameter, measured) {
        (Some(d), _) => d,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(Error::invalid(format!(
                "the label images in {} hold no objects: nothing to learn from",
                opts.labels.display()
            )));
        }
    };
    let train_diameter = opts
        .train_diameter
        .unwrap_or_else(|| default_train_diameter(m.diameter, diameter));
    let rescale = train_diameter / diameter;
    let c_in = net.in_channels;
    let samples = load_samples(&train_pairs, c_in, m, rescale)?;
    let val_samples = load_samples(&val_pairs, c_in, m, rescale)?;
    let flow_scale = m.output.flow_scale as f32;
    let mut vrng = Rng::new(12345);
    let val_batches: Vec<data::Batch> = if val_samples.is_empty() {
        Vec::new()
    } else {
        (0..4)
            .map(|j| {
                let idx: Vec<usize> = (0..opts.batch_size)
                    .map(|i| (j * opts.batch_size + i) % val_samples.len())
                    .collect();
                data::make_batch(
                    &val_samples,
                    &idx,
                    &mut vrng,
                    opts.crop,
                    opts.scale_range,
                    false,
                )
            })
            .collect()
    };

    // state: fresh, or from the checkpoint
    let key = format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}",
        parent.onnx_sha,
        opts.steps,
        opts.batch_size,
        opts.crop,
        opts.learning_rate,
        opts.seed,
        train_pairs.len(),
        rescale,
        net.in_channels
    );
    let sizes: Vec<usize> = net.params.iter().map(|p| p.data.len()).collect();
    let bsizes: Vec<usize> = net.buffers.iter().map(|p| p.data.len()).collect();
    let decay: Vec<bool> = net.params.iter().map(|p| p.decay).collect();
    let mut adam = AdamW::new(&sizes, opts.weight_decay);
    let mut rng = Rng::new(opts.seed);
    let mut history: Vec<LossPoint> = Vec::new();
    let mut step0 = 0;
    let mut elapsed0 = 0.0;
    if opts.resume {
        let c = read_checkpoint(&ckpt_path, &sizes, &bsizes)?;
        if c.key != key {
            return Err(Error::invalid(format!(
                "{} was written by a run with other settings or data; resume with the same options, or start a new --out folder",
                ckpt_path.display()
            )));
        }
        for (p, d) in net.params.iter_mut().zip(c.params) {
            p.data = d;
        }
        for (p, d) in net.buffers.iter_mut().zip(c.buffers) {
            p.data = d;
        }
        adam.m = c.m;
        adam.v = c.v;
        adam.t = c.adam_t;
        rng = Rng::from_state(c.rng);
        history = c.history;
        step0 = c.step;
        elapsed0 = c.elapsed_s;
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;

    let save =
        |net: &Net, adam: &AdamW, rng: &Rng, step: usize, history: &[LossPoint], elapsed: f64| {
            write_checkpoint(
                &ckpt_path,
                &Checkpoint {
                    step,
                    rng: rng.state(),
                    adam_t: adam.t,
                    history: history.to_vec(),
                    elapsed_s: elapsed,
                    key: key.clone(),
                    params: net.params.iter().map(|p| p.data.clone()).collect(),
                    buffers: net.buffers.iter().map(|p| p.data.clone()).collect(),
                    m: adam.m.clone(),
                    v: adam.v.clone(),
                },
            )
        };

    if !opts.resume {
        // the parent's validation loss: where the curve starts
        let v0 = val_loss(&mut net, &val_batches, flow_scale)?;
        if v0.is_some() {
            history.push(LossPoint {
                step: 0,
                train_loss: f64::NAN,
                val_loss: v0,
                lr: 0.0,
                elapsed_s: 0.0,
            });
        }
    }
    let t0 = Instant::now();
    let mut last_ckpt = Instant::now();
    let mut recent: Vec<f64> = Vec::new();
    let mut last_val = history.iter().rev().find_map(|p| p.val_loss);
    let warmup = opts.warmup.min(opts.steps / 5).max(1);
    let budget_s = opts.minutes.map(|m| m * 60.0);
    let mut step = step0;
    while step < opts.steps {
        let elapsed = elapsed0 + t0.elapsed().as_secs_f64();
        let mut prog = (step.saturating_sub(warmup)) as f64 / (opts.steps - warmup).max(1) as f64;
        if let Some(b) = budget_s {
            if elapsed >= b {
                break;
            }
            prog = prog.max(elapsed / b);
        }
        let lr = optim::lr_at(step, prog, opts.learning_rate, warmup);
        let idx: Vec<usize> = (0..opts.batch_size)
            .map(|_| rng.below(samples.len()))
            .collect();
        let b = data::make_batch(&samples, &idx, &mut rng, opts.crop, opts.scale_range, true);
        let tape = net.forward(
            Value {
                shape: vec![b.n, b.channels, b.size, b.size],
                data: b.x,
            },
            true,
        )?;
        let loss = optim::cellpose_loss(
            &tape.output(&net).data,
            &b.flows,
            &b.cellprob,
            &b.weight,
            b.n,
            b.size * b.size,
            flow_scale,
        );
        if !loss.value.is_finite() {
            return Err(Error::Runtime(format!(
                "the training loss became {} at step {}: lower the learning rate",
                loss.value,
                step + 1
            )));
        }
        let grads = net.backward(&tape, loss.grad);
        net.recycle(tape);
        {
            let mut ps: Vec<&mut [f32]> = net
                .params
                .iter_mut()
                .map(|p| p.data.as_mut_slice())
                .collect();
            adam.step(&mut ps, &grads, &decay, lr);
        }
        step += 1;
        recent.push(loss.value);
        if recent.len() > 20 {
            recent.remove(0);
        }
        let mean_recent = recent.iter().sum::<f64>() / recent.len() as f64;
        let done_here = (step - step0) as f64;
        let el = t0.elapsed().as_secs_f64();
        let s_per_step = el / done_here;
        let log_now = step % 10 == 0 || step == opts.steps;
        if step % 100 == 0 || step == opts.steps {
            last_val = val_loss(&mut net, &val_batches, flow_scale)?;
        }
        if log_now {
            history.push(LossPoint {
                step,
                train_loss: mean_recent,
                val_loss: if step % 100 == 0 || step == opts.steps {
                    last_val
                } else {
                    None
                },
                lr,
                elapsed_s: elapsed0 + el,
            });
        }
        let mut eta = (opts.steps - step) as f64 * s_per_step;
        if let Some(b) = budget_s {
            eta = eta.min((b - elapsed0 - el).max(0.0));
        }
        let go_on = progress(&TrainProgress {
            step,
            steps: opts.steps,
            loss: mean_recent,
            val_loss: last_val,
            lr,
            elapsed_s: elapsed0 + el,
            eta_s: eta,
        });
        if !go_on {
            save(&net, &adam, &rng, step, &history, elapsed0 + el)?;
            return Err(Error::Cancelled);
        }
        if last_ckpt.elapsed().as_secs_f64() >= opts.checkpoint_every_s {
            save(&net, &adam, &rng, step, &history, elapsed0 + el)?;
            last_ckpt = Instant::now();
        }
    }
    let final_val = val_loss(&mut net, &val_batches, flow_scale)?;
    net.release_buffers();
    let final_train = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    if history.last().is_none_or(|p| p.step != step) {
        history.push(LossPoint {
            step,
            train_loss: final_train,
            val_loss: final_val,
            lr: 0.0,
            elapsed_s: elapsed0 + t0.elapsed().as_secs_f64(),
        });
    }
    let wall = elapsed0 + t0.elapsed().as_secs_f64();

    // the clone
    let mut edits = onnx::Edits::default();
    for p in net.params.iter().chain(&net.buffers) {
        edits
            .initializers
            .insert(p.name.clone(), (p.dims.clone(), p.data.clone()));
    }
    if net.in_channels != parent_channels {
        edits.input_dim = Some((net.input_name.clone(), 1, net.in_channels as i64));
    }
    let model_bytes = onnx::rewrite(&parent.onnx, &edits)?;
    let model_sha = sha256_hex(&model_bytes);
    let records = |ps: &[Pair]| -> Result<Vec<Json>> { ps.iter().map(file_record).collect() };
    let mut mj = parent.manifest_json.clone();
    let parent_name = m.name.clone();
    mj["name"] = json!(name);
    mj["version"] = json!(opts.version);
    mj["description"] = json!(format!(
        "Fine-tuned from {} {} by cytoseg train on {} image(s).",
        parent_name,
        m.version,
        train_pairs.len()
    ));
    mj["use_for"] = json!(format!(
        "images like the training images ({})",
        opts.images.display()
    ));
    mj["model"]["file"] = json!("model.onnx");
    mj["model"]["sha256"] = json!(model_sha);
    mj["model"]["bytes"] = json!(model_bytes.len());
    mj["diameter"] = json!(train_diameter);
    mj["input"]["channels"] = json!(net.in_channels);
    mj["default_diameter"] = json!(diameter);
    mj["diameter_method"] = json!(match opts.diameter {
        Some(_) => "given by the user (--diameter)".to_string(),
        None => "median over all training objects of sqrt(area)/(sqrt(pi)/2), as cellpose.utils.diameters".to_string(),
    });
    mj["training_data"] = json!({
        "name": format!("{}", opts.images.display()),
        "images": train_pairs.len(),
        "validation_images": val_pairs.len(),
        "split_rule": if held_out { "every 10th image (sorted by name) held out for validation" } else if val_pairs.is_empty() { "no validation images" } else { "validation folders given" },
    });
    if let Some(o) = mj.as_object_mut() {
        o.remove("validation");
        o.remove("validation_scripts");
        // the parent's reduced-precision networks hold the parent's weights
        o.remove("variants");
        o.remove("training");
    }
    mj["lineage"] = json!({
        "parent": {
            "name": parent_name,
            "version": m.version,
            "sha256": parent.onnx_sha,
            "path": opts.from.display().to_string(),
        },
        "training_images": records(&train_pairs)?,
        "validation_images": records(&val_pairs)?,
        "parameters": {
            "steps": opts.steps,
            "minutes": opts.minutes,
            "batch_size": opts.batch_size,
            "crop": opts.crop,
            "learning_rate": opts.learning_rate,
            "weight_decay": opts.weight_decay,
            "warmup": warmup,
            "schedule": "linear warm-up, cosine decay to 2%",
            "optimizer": "AdamW (beta 0.9, 0.999; eps 1e-8)",
            "loss": "MSE(flows, 5 x unit flows)/2 + BCEWithLogits(cellprob), Cellpose",
            "scale_range": [opts.scale_range.0, opts.scale_range.1],
            "diameter": diameter,
            "train_diameter": train_diameter,
            "rescale": rescale,
            "masks": opts.masks.as_ref().map(|p| p.display().to_string()),
            "channels": net.in_channels,
            "parent_channels": parent_channels,
            "command": opts.command,
        },
        "seed": opts.seed,
        "steps": step,
        "final_train_loss": final_train,
        "final_val_loss": final_val,
        "cytoseg_version": crate::VERSION,
        "device": "cpu (cytoseg native trainer)",
        "wall_time_s": wall,
        "date": crate::batch::utc_now(),
        "loss_csv": "loss.csv",
        "loss_plot": "loss.png",
    });
    let out = &opts.out;
    let write = |file: &str, bytes: &[u8]| -> Result<()> {
        let p = out.join(file);
        crate::io::write_atomic(&p, true, |w| {
            use std::io::Write;
            w.write_all(bytes).map_err(|e| Error::io(&p, e))
        })
    };
    write("model.onnx", &model_bytes)?;
    report::write_loss_csv(&out.join("loss.csv"), &history)?;
    report::write_loss_plot(
        &out.join("loss.png"),
        &history,
        &format!("{name}: training from {parent_name}"),
    )?;
    write("MODEL_CARD.md", report::model_card(&mj).as_bytes())?;
    let text = serde_json::to_string_pretty(&mj).map_err(|e| Error::invalid(e.to_string()))?;
    write("manifest.json", text.as_bytes())?;
    // the package is complete: the checkpoint is no longer needed
    let _ = std::fs::remove_file(&ckpt_path);
    Ok(TrainReport {
        out: out.clone(),
        steps: step,
        final_train_loss: final_train,
        final_val_loss: final_val,
        diameter,
        images: (train_pairs.len(), val_pairs.len()),
        wall_s: t_call.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::{CELL_SCALE, default_train_diameter};

    #[test]
    fn the_default_training_scale_keeps_small_objects_at_the_parents_and_caps_large_ones() {
        // nuclei parent (17.1 px): small nuclei are enlarged to it, nuclei of about its size
        // keep theirs, whole cells are shrunk to Cellpose's cell scale only
        assert_eq!(default_train_diameter(17.1, 8.0), 17.1);
        assert_eq!(default_train_diameter(17.1, 17.9), 17.9);
        assert_eq!(default_train_diameter(17.1, 56.5), CELL_SCALE);
        // a parent already at a larger scale keeps it
        assert_eq!(default_train_diameter(40.0, 56.5), 40.0);
        assert_eq!(default_train_diameter(30.0, 12.0), 30.0);
    }
}
