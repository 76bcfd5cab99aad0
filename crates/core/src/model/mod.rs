//! Segmentation networks run through ONNX Runtime: model packages, image preparation and
//! tiling as Cellpose 4 does them, then the exact flows → labels conversion.

pub mod manifest;
pub mod precision;
pub mod preprocess;
pub mod registry;
pub mod runtime;
pub mod tiling;
pub mod volume;

pub use registry::{list_models, resolve_model};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use ndarray::ArrayView4;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorRef, ValueType};

use crate::error::{Error, Result};
use crate::flows::{self, FlowsRef, MaskParams};
use crate::image::ImageView;

pub use manifest::Manifest;
pub use precision::Precision;
pub use runtime::{Device, Runtime};
pub use tiling::Tiling;
pub use volume::{VolumeMode, VolumeSegmentation, anisotropy_for, check_stack_size};

/// How a model is loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Where the network runs (`auto` by default: a GPU provider if one is available).
    pub device: Device,
    /// Where to look for the ONNX Runtime library, in order (the first that loads is used,
    /// once per process). The host decides: see `cytoseg::host`.
    pub ort_search: Vec<runtime::Candidate>,
    /// Folders in which a model given by name is looked up. The host decides: see
    /// `cytoseg::host`.
    pub model_dirs: Vec<PathBuf>,
    /// Intra-op threads of ONNX Runtime (0 = its default: one per core).
    pub threads: usize,
}

/// Which image channels feed the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ChannelChoice {
    /// Automatic: a one-channel model gets the mean of the image's channels (Cellpose's
    /// `channels=[0,0]`); a multi-channel model gets the first channels, zero-padded.
    #[default]
    Auto,
    /// These image channels (0-based), one per model input channel.
    Select(Vec<usize>),
}

impl ChannelChoice {
    /// One channel as the hosts give it: `-1` for [`ChannelChoice::Auto`], `c >= 0` for
    /// channel `c` (0-based); other values are an error naming `what`.
    pub fn from_index(channel: i64, what: &str) -> Result<Self> {
        match channel {
            -1 => Ok(ChannelChoice::Auto),
            c if c >= 0 => Ok(ChannelChoice::Select(vec![c as usize])),
            c => Err(Error::invalid(format!(
                "{what} is {c}: use -1 (mean of all channels) or a channel >= 0"
            ))),
        }
    }
}

/// Parameters of [`Model::segment`].
#[derive(Debug, Clone)]
pub struct SegmentParams {
    /// Typical object diameter in pixels; `None` uses the model's `default_diameter` when its
    /// manifest has one, else the model's own diameter (no resizing), as does a value <= 0.
    /// The image is resized by `model diameter / diameter` for the network.
    pub diameter: Option<f64>,
    /// Channels feeding the network.
    pub channels: ChannelChoice,
    /// Flows → labels parameters. `niter == 0` means Cellpose's automatic choice
    /// `int(200 / rescale)`.
    pub mask: MaskParams,
    /// How images are cut into network tiles ([`Tiling::Fast`] by default;
    /// [`Tiling::Cellpose`] for labels equal to Cellpose's pipeline).
    pub tiling: Tiling,
    /// Tile edge, a multiple of the model's size multiple (default: the model's with
    /// [`Tiling::Cellpose`], the largest tile edge [`tiling::FAST_TILE`] with [`Tiling::Fast`]).
    pub tile_size: Option<usize>,
    /// Fractional tile overlap (default: the model's with [`Tiling::Cellpose`], clamped to
    /// [0.05, 0.5] as Cellpose; [`tiling::FAST_OVERLAP`] of the largest tile edge with
    /// [`Tiling::Fast`]).
    pub tile_overlap: Option<f64>,
    /// Tiles per network call (with [`Tiling::Fast`], counted in tiles of the model's tile
    /// size: that many pixels per call, at least one tile).
    pub batch_size: usize,
    /// Keep the network's flows and cell probability in the result.
    pub keep_flows: bool,
    /// Which copy of the network runs ([`Precision::Auto`] by default: the package's
    /// validated int8 variant on the CPU with [`Tiling::Fast`], float32 otherwise).
    pub precision: Precision,
}

impl SegmentParams {
    /// The model's defaults.
    pub fn for_model(model: &Model) -> Self {
        let d = &model.manifest.mask_defaults;
        SegmentParams {
            diameter: None,
            channels: ChannelChoice::Auto,
            mask: MaskParams {
                cellprob_threshold: d.cellprob_threshold,
                flow_threshold: d.flow_threshold,
                niter: 0,
                min_size: d.min_size,
                max_size_fraction: d.max_size_fraction,
            },
            tiling: Tiling::default(),
            tile_size: None,
            tile_overlap: None,
            batch_size: 8,
            keep_flows: false,
            precision: Precision::default(),
        }
    }
}

/// Progress of a segmentation, reported between network batches.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Tiles run so far.
    pub tiles_done: usize,
    /// Tiles in total.
    pub tiles_total: usize,
}

/// Time spent in each stage, in seconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timings {
    /// Channel selection, normalization, resizing.
    pub preprocess: f64,
    /// Network (all tiles) and blending.
    pub network: f64,
    /// Flows → labels.
    pub masks: f64,
}

/// The result of segmenting one image.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// Row-major labels, 0 = background, 1..n.
    pub labels: Vec<u32>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of objects n.
    pub count: u32,
    /// `(dY, dX, cellprob)` planes at image size, when requested.
    pub flows: Option<[Vec<f32>; 3]>,
    /// Stage timings.
    pub timings: Timings,
    /// Number of integration steps used.
    pub niter: u32,
    /// How sure the network was of what it found (per-image QC measures).
    pub quality: crate::qc::NetworkQuality,
}

/// A loaded model package: manifest, verified ONNX network(s), and their ONNX Runtime sessions.
/// `Send + Sync`: one model may segment from several threads (up to [`CPU_SESSIONS`] network
/// calls at a time on the CPU, one on a GPU; the others wait).
#[derive(Debug)]
pub struct Model {
    /// The package manifest.
    pub manifest: Manifest,
    /// The package folder.
    pub dir: PathBuf,
    /// The execution provider in use.
    pub device: Device,
    /// The ONNX Runtime in use.
    pub runtime: &'static Runtime,
    fp32: Network,
    /// The package's int8 variant, loaded when it has one and the model runs on the CPU.
    int8: Option<Network>,
}

/// The largest number of ONNX Runtime sessions of one network on the CPU: concurrent calls (a batch's parallel
/// images, several host threads) run in parallel up to this many, each session with the
/// load's thread count and without spinning threads. Two such sessions in parallel segment
/// 1.2× (float32) to 1.5× (int8) the images per second of one session serving both in turn
/// (2-core Xeon, README "Precision"); a second session is only made when a second call comes
/// while the first is busy.
pub const CPU_SESSIONS: usize = 2;

/// One network (the float32 one or a variant) and its sessions: one per concurrent call, up
/// to [`CPU_SESSIONS`] on the CPU (one on a GPU), made as needed.
struct Network {
    bytes: Vec<u8>,
    device: Device,
    threads: usize,
    sessions: Mutex<Vec<std::sync::Arc<Mutex<Session>>>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("bytes", &self.bytes.len())
            .field("device", &self.device)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Network {
    fn new(first: Session, bytes: Vec<u8>, device: Device, threads: usize) -> Network {
        Network {
            bytes,
            device,
            threads,
            sessions: Mutex::new(vec![std::sync::Arc::new(Mutex::new(first))]),
        }
    }

    /// Runs `f` on a free session: an idle one, else a new one (below the limit), else the
    /// first once it is free.
    fn with_session<R>(&self, rt: &Runtime, f: impl FnOnce(&mut Session) -> R) -> R {
        use std::sync::TryLockError;
        let list = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in &list {
            match s.try_lock() {
                Ok(mut g) => return f(&mut g),
                Err(TryLockError::Poisoned(e)) => return f(&mut e.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let limit = if self.device == Device::Cpu {
            CPU_SESSIONS
        } else {
            1
        };
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() < limit {
            match build_session(rt, &self.bytes, self.device, self.threads) {
                Ok(s) => {
                    let s = std::sync::Arc::new(Mutex::new(s));
                    all.push(s.clone());
                    drop(all);
                    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                    return f(&mut g);
                }
                // not fatal: the call waits for a session instead
                Err(e) => log::warn!("no second ONNX Runtime session ({e}); calls take turns"),
            }
        }
        let first = all[0].clone();
        drop(all);
        let mut g = first.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }
}

fn ort_err(context: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("{context}: {e}"))
}

fn build_session(rt: &Runtime, bytes: &[u8], device: Device, threads: usize) -> Result<Session> {
    let mut b = Session::builder(&rt.env)
        .map_err(ort_err("creating a session"))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| Error::Runtime(e.to_string()))?;
    if threads > 0 {
        b = b
            .with_intra_threads(threads)
            .map_err(|e| Error::Runtime(e.to_string()))?;
    }
    // Threads that wait by sleeping, not spinning: concurrent sessions share the cores.
    b = b
        .with_intra_op_spinning(false)
        .map_err(|e| Error::Runtime(e.to_string()))?;
    if device != Device::Cpu {
        b = b
            .with_execution_providers([device.dispatch()])
            .map_err(|e| Error::Runtime(format!("execution provider {}: {e}", device.name())))?;
    }
    b.commit_from_memory(bytes)
        .map_err(ort_err("loading the network"))
}

/// Reads a network file (within the decoded-bytes limit) and checks it against the SHA-256 the
/// manifest records for it; `whose` names that record in the error ("manifest's").
fn read_verified(path: &Path, what: &str, sha256: &str, whose: &str) -> Result<Vec<u8>> {
    let bytes = crate::io::limits::read_file(path, what, crate::io::limits::max_decoded_bytes())?;
    let sha = manifest::sha256_hex(&bytes);
    if sha != sha256.to_ascii_lowercase() {
        return Err(Error::Model(format!(
            "{}: SHA-256 {sha} does not match the {whose} {sha256} (the file is corrupt or was replaced)",
            path.display()
        )));
    }
    Ok(bytes)
}

impl Model {
    /// Loads a model package by bundled name or path, checks the ONNX file's SHA-256 and the
    /// network's input/output signature against the manifest, and opens a session on the
    /// requested device.
    pub fn load(name_or_path: &str, options: &LoadOptions) -> Result<Model> {
        let dir = resolve_model(name_or_path, &options.model_dirs)?;
        let manifest = Manifest::read(&dir.join("manifest.json"))?;
        let bytes = read_verified(
            &manifest.onnx_path(&dir),
            "the ONNX network",
            &manifest.model.sha256,
            "manifest's",
        )?;
        let rt = runtime::runtime(&options.ort_search)?;
        let (session, device) = match options.device {
            Device::Auto => {
                let mut chosen = None;
                for d in runtime::AUTO_ORDER
                    .into_iter()
                    .filter(|d| d.is_available(rt))
                {
                    match build_session(rt, &bytes, d, options.threads) {
                        Ok(s) => {
                            chosen = Some((s, d));
                            break;
                        }
                        Err(e) => {
                            log::warn!("device {} unavailable, trying the next: {e}", d.name())
                        }
                    }
                }
                match chosen {
                    Some(c) => c,
                    None => (
                        build_session(rt, &bytes, Device::Cpu, options.threads)?,
                        Device::Cpu,
                    ),
                }
            }
            d => {
                if !d.is_available(rt) {
                    return Err(Error::Runtime(format!(
                        "device {} is not available in ONNX Runtime {} ({}): install a build with that provider (e.g. onnxruntime-gpu for cuda) or choose --device cpu",
                        d.name(),
                        rt.version,
                        rt.library.display()
                    )));
                }
                (build_session(rt, &bytes, d, options.threads)?, d)
            }
        };
        log::info!(
            "model {} {} on {}",
            manifest.name,
            manifest.version,
            device.name()
        );
        check_signature(&session, &manifest)?;
        let int8 = match Precision::Int8.variant(&manifest) {
            Some(v) if device == Device::Cpu => {
                let bytes = read_verified(
                    &dir.join(&v.file),
                    "the int8 network",
                    &v.sha256,
                    "manifest's int8 variant",
                )?;
                let s = build_session(rt, &bytes, Device::Cpu, options.threads)?;
                check_signature(&s, &manifest)?;
                Some(Network::new(s, bytes, Device::Cpu, options.threads))
            }
            _ => None,
        };
        Ok(Model {
            manifest,
            dir,
            device,
            runtime: rt,
            fp32: Network::new(session, bytes, device, options.threads),
            int8,
        })
    }

    /// The precision a segmentation with `params` runs at ([`Precision::Fp32`] or
    /// [`Precision::Int8`], see [`Precision::resolve`]) and the SHA-256 of that network.
    pub fn precision_for(&self, params: &SegmentParams) -> Result<(Precision, &str)> {
        let p = params.precision.resolve(
            params.tiling,
            &self.manifest,
            self.int8.is_some(),
            self.device.name(),
        )?;
        let sha = match p.variant(&self.manifest) {
            Some(v) => &v.sha256,
            None => &self.manifest.model.sha256,
        };
        Ok((p, sha))
    }

    /// The precisions this model can run at, as loaded: `fp32`, and `int8` when its package
    /// has that variant and the model runs on the CPU.
    pub fn precisions(&self) -> Vec<Precision> {
        let mut v = vec![Precision::Fp32];
        if self.int8.is_some() {
            v.push(Precision::Int8);
        }
        v
    }

    /// Runs the float32 network on a batch `(n, C, h, w)` and returns `(n, 3, h, w)`.
    pub fn run_network(&self, input: ArrayView4<'_, f32>) -> Result<Vec<f32>> {
        self.run_network_at(input, Precision::Fp32)
    }

    /// Runs the network at `precision` ([`Precision::Int8`]: the int8 variant, which must be
    /// loaded; otherwise float32) on a batch `(n, C, h, w)` and returns `(n, 3, h, w)`.
    pub fn run_network_at(
        &self,
        input: ArrayView4<'_, f32>,
        precision: Precision,
    ) -> Result<Vec<f32>> {
        let (n, _, h, w) = input.dim();
        let tensor = TensorRef::from_array_view(input).map_err(ort_err("preparing the input"))?;
        let network = match (precision, &self.int8) {
            (Precision::Int8, Some(s)) => s,
            (Precision::Int8, None) => {
                return Err(Error::invalid(format!(
                    "model {} has no int8 network loaded",
                    self.manifest.name
                )));
            }
            _ => &self.fp32,
        };
        network.with_session(self.runtime, |session| {
            let outputs = session
                .run(ort::inputs![self.manifest.input.name.as_str() => tensor])
                .map_err(ort_err("running the network"))?;
            let value = outputs
                .get(self.manifest.output.name.as_str())
                .ok_or_else(|| {
                    Error::Model(format!(
                        "the network has no output {:?}",
                        self.manifest.output.name
                    ))
                })?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(ort_err("reading the output"))?;
            let want = [n as i64, 3, h as i64, w as i64];
            if shape[..] != want {
                return Err(Error::Model(format!(
                    "the network returned shape {:?} for input {:?}, expected {want:?}",
                    &shape[..],
                    input.dim()
                )));
            }
            Ok(data.to_vec())
        })
    }

    /// The factor images are resized by for the network: `model diameter / diameter`, 1 without
    /// a diameter (see [`SegmentParams::diameter`]).
    pub(crate) fn rescale(&self, params: &SegmentParams) -> Result<f64> {
        match params.diameter.or(self.manifest.default_diameter) {
            Some(d) if d > 0.0 && d.is_finite() => Ok(self.manifest.diameter / d),
            Some(d) if !d.is_finite() => Err(Error::invalid(format!("diameter {d} is not finite"))),
            _ => Ok(1.0),
        }
    }

    /// The network's plane size for an `h × w` plane at `rescale` (Cellpose's `int(L * rescale)`),
    /// refused when it leaves fewer than 2 pixels or exceeds the largest side.
    pub(crate) fn network_size(
        &self,
        params: &SegmentParams,
        rescale: f64,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize)> {
        if rescale == 1.0 {
            return Ok((h, w));
        }
        let lh = (h as f64 * rescale) as usize;
        let lw = (w as f64 * rescale) as usize;
        if lh < 2 || lw < 2 || lh > flows::MAX_SIDE || lw > flows::MAX_SIDE {
            return Err(Error::invalid(format!(
                "diameter {:?} resizes the {h}×{w} image to {lh}×{lw}: choose a diameter closer to the objects' size",
                params.diameter.or(self.manifest.default_diameter)
            )));
        }
        Ok((lh, lw))
    }

    /// Segments one 2-D image: channel selection, normalization, resizing by diameter, tiled
    /// network with Cellpose's blending, resizing back, then flows → labels.
    /// `progress` is called after each network batch; returning `false` cancels.
    pub fn segment(
        &self,
        image: &ImageView<'_>,
        params: &SegmentParams,
        progress: Option<&dyn Fn(Progress) -> bool>,
    ) -> Result<Segmentation> {
        let t0 = Instant::now();
        let (h, w) = (image.height, image.width);
        flows::check_size(h, w)?;
        if image.has_non_finite() {
            return Err(Error::NonFinite(
                "the image holds NaN or infinite values".into(),
            ));
        }
        params.mask.validate()?;
        let c_in = self.manifest.input.channels;
        let mut data = network_planes(image, &params.channels, c_in, &self.manifest.normalization)?;
        let rescale = self.rescale(params)?;
        let (lh, lw) = self.network_size(params, rescale, h, w)?;
        if rescale != 1.0 {
            data = preprocess::resize_linear(&data, c_in, h, w, lh, lw)?;
        }
        let t1 = Instant::now();
        let yf = self.run_tiled(&data, lh, lw, params, progress)?;
        drop(data);
        let yf = if rescale != 1.0 {
            preprocess::resize_linear(&yf, 3, lh, lw, h, w)?
        } else {
            yf
        };
        let t2 = Instant::now();
        let n = h * w;
        let (dy, rest) = yf.split_at(n);
        let (dx, cellprob) = rest.split_at(n);
        let mut mask = params.mask;
        if mask.niter == 0 {
            mask.niter = (200.0 / rescale) as u32;
        }
        let fl = FlowsRef {
            dy,
            dx,
            cellprob,
            height: h,
            width: w,
        };
        let (mut labels, flow_qc) = flows::compute_masks_unfilled_qc(&fl, &mask)?;
        // As Cellpose's `resize_and_compute_masks`, which `eval` calls: holes are filled
        // whatever `min_size` (`<= 0` only turns the size filter off).
        flows::fill_holes_and_remove_small_masks(&mut labels, h, w, mask.min_size)?;
        let count = labels.iter().copied().max().unwrap_or(0);
        let quality = crate::qc::NetworkQuality::new(&labels, cellprob, flow_qc);
        let t3 = Instant::now();
        let flows_out = params
            .keep_flows
            .then(|| [dy.to_vec(), dx.to_vec(), cellprob.to_vec()]);
        Ok(Segmentation {
            labels,
            height: h,
            width: w,
            count,
            flows: flows_out,
            niter: mask.niter,
            quality,
            timings: Timings {
                preprocess: (t1 - t0).as_secs_f64(),
                network: (t2 - t1).as_secs_f64(),
                masks: (t3 - t2).as_secs_f64(),
            },
        })
    }
}

/// The network input of an image, `c_in × height × width` float32 row-major: the channels
/// chosen as [`Model::segment`] chooses them (see [`ChannelChoice`]), then Cellpose's
/// `normalize99` per plane with the model's percentiles; a plane that cannot be normalized (no
/// range) is zeroed, as Cellpose 4 does. This is the one definition of that conversion, shared
/// by segmentation and training. Neither size nor finiteness is checked here.
pub fn network_planes(
    image: &ImageView<'_>,
    choice: &ChannelChoice,
    c_in: usize,
    norm: &manifest::Normalization,
) -> Result<Vec<f32>> {
    let (h, w) = (image.height, image.width);
    let mut planes = select_channels(image, choice, c_in)?;
    for p in planes.iter_mut() {
        if !preprocess::normalize99(p, h, w, norm.low, norm.high) {
            // Cellpose 4 zeroes channels it could not normalize.
            p.fill(0.0);
        }
    }
    Ok(planes.concat())
}

/// Builds the network's input planes from the image's channels.
fn select_channels(
    image: &ImageView<'_>,
    choice: &ChannelChoice,
    c_in: usize,
) -> Result<Vec<Vec<f32>>> {
    let n = image.width * image.height;
    match choice {
        ChannelChoice::Select(list) => {
            if list.len() != c_in {
                return Err(Error::invalid(format!(
                    "{} channel(s) chosen, the model takes {c_in}",
                    list.len()
                )));
            }
            list.iter()
                .map(|&c| {
                    if c >= image.channels {
                        Err(Error::invalid(format!(
                            "channel {c} chosen, the image has {} (0-based)",
                            image.channels
                        )))
                    } else {
                        Ok(image.plane(c))
                    }
                })
                .collect()
        }
        ChannelChoice::Auto if c_in == 1 && image.channels > 1 => {
            let mut acc = vec![0.0f32; n];
            for c in 0..image.channels {
                for (a, v) in acc.iter_mut().zip(image.plane(c)) {
                    *a += v;
                }
            }
            let k = image.channels as f32;
            acc.iter_mut().for_each(|a| *a /= k);
            Ok(vec![acc])
        }
        ChannelChoice::Auto => Ok((0..c_in)
            .map(|c| {
                if c < image.channels {
                    image.plane(c)
                } else {
                    vec![0.0; n]
                }
            })
            .collect()),
    }
}

fn check_signature(session: &Session, m: &Manifest) -> Result<()> {
    let shape_of = |t: &ValueType| match t {
        ValueType::Tensor { shape, .. } => Some(shape.to_vec()),
        _ => None,
    };
    let inputs = session.inputs();
    let outputs = session.outputs();
    let input = inputs
        .iter()
        .find(|o| o.name() == m.input.name)
        .ok_or_else(|| {
            Error::Model(format!(
                "the network's inputs are {:?}, the manifest names {:?}",
                inputs
                    .iter()
                    .map(|o| o.name().to_string())
                    .collect::<Vec<_>>(),
                m.input.name
            ))
        })?;
    let ishape = shape_of(input.dtype()).unwrap_or_default();
    if ishape.len() != 4 || (ishape[1] != -1 && ishape[1] != m.input.channels as i64) {
        return Err(Error::Model(format!(
            "input {:?} has shape {ishape:?}, the manifest describes (N, {}, H, W)",
            m.input.name, m.input.channels
        )));
    }
    let output = outputs
        .iter()
        .find(|o| o.name() == m.output.name)
        .ok_or_else(|| {
            Error::Model(format!(
                "the network's outputs are {:?}, the manifest names {:?}",
                outputs
                    .iter()
                    .map(|o| o.name().to_string())
                    .collect::<Vec<_>>(),
                m.output.name
            ))
        })?;
    let oshape = shape_of(output.dtype()).unwrap_or_default();
    if oshape.len() != 4 || (oshape[1] != -1 && oshape[1] != 3) {
        return Err(Error::Model(format!(
            "output {:?} has shape {oshape:?}, expected (N, 3, H, W) = dY, dX, cellprob",
            m.output.name
        )));
    }
    Ok(())
}
