//! `cytoseg segment` and `cytoseg models`: run a model on images, list the bundled models.

use std::path::PathBuf;

use clap::Args;

use crate::core::error::{Error, Result};
use crate::core::io::{image::read_image, labels::write_labels, npy, write_atomic};
use crate::core::model::{
    ChannelChoice, Device, LoadOptions, Model, SegmentParams, list_models, runtime,
};

/// Arguments shared by every command that loads a model.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Model: a bundled name (see `cytoseg models`) or a package folder.
    #[arg(long, default_value = "nuclei")]
    pub model: String,
    /// Where the network runs: cpu, cuda, tensorrt, coreml, directml or auto (a GPU if
    /// available, else the CPU).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// ONNX Runtime library to use (default: ORT_DYLIB_PATH, next to cytoseg, or python3's
    /// onnxruntime package).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl ModelArgs {
    /// Loads the model these arguments name.
    pub fn load(&self) -> Result<Model> {
        let options = LoadOptions {
            device: Device::parse(&self.device)?,
            ort_lib: self.ort_lib.clone(),
            threads: self.threads,
        };
        Model::load(&self.model, &options)
    }
}

/// Segmentation parameters on the command line.
#[derive(Debug, Args, Clone)]
pub struct SegmentArgs {
    /// Typical object diameter in pixels (default: the model's; the image is resized by
    /// model diameter / diameter).
    #[arg(long)]
    pub diameter: Option<f64>,
    /// Image channel(s) for the network, 0-based, comma-separated (default: the mean of all
    /// channels for a one-channel model).
    #[arg(long, value_delimiter = ',')]
    pub channel: Option<Vec<usize>>,
    /// Pixels with cellprob above this are followed.
    #[arg(long, allow_negative_numbers = true)]
    pub cellprob_threshold: Option<f32>,
    /// Maximum flow error of a kept mask; 0 turns quality control off.
    #[arg(long)]
    pub flow_threshold: Option<f64>,
    /// Integration steps (default: 200 scaled by the resize factor, as Cellpose).
    #[arg(long)]
    pub niter: Option<u32>,
    /// Minimum mask size in pixels.
    #[arg(long, allow_negative_numbers = true)]
    pub min_size: Option<i64>,
    /// Masks larger than this fraction of the image are removed.
    #[arg(long)]
    pub max_size_fraction: Option<f64>,
    /// Tile edge in pixels (multiple of 16; default: the model's).
    #[arg(long)]
    pub tile_size: Option<usize>,
    /// Fractional tile overlap (default: the model's).
    #[arg(long)]
    pub tile_overlap: Option<f64>,
    /// Tiles per network call.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

impl SegmentArgs {
    /// The model's defaults overridden by these arguments.
    pub fn params(&self, model: &Model) -> SegmentParams {
        let mut p = SegmentParams::for_model(model);
        p.diameter = self.diameter;
        if let Some(c) = &self.channel {
            p.channels = ChannelChoice::Select(c.clone());
        }
        if let Some(v) = self.cellprob_threshold {
            p.mask.cellprob_threshold = v;
        }
        if let Some(v) = self.flow_threshold {
            p.mask.flow_threshold = v;
        }
        if let Some(v) = self.niter {
            p.mask.niter = v;
        }
        if let Some(v) = self.min_size {
            p.mask.min_size = v;
        }
        if let Some(v) = self.max_size_fraction {
            p.mask.max_size_fraction = v;
        }
        p.tile_size = self.tile_size;
        p.tile_overlap = self.tile_overlap;
        p.batch_size = self.batch_size;
        p
    }
}

/// Arguments of `cytoseg segment`.
#[derive(Debug, Args)]
pub struct SegmentCmd {
    /// Images to segment (.tif, .tiff, .npy).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output folder: writes <stem>_labels.tif for each image.
    #[arg(long)]
    pub out: PathBuf,
    /// Model selection.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Segmentation parameters.
    #[command(flatten)]
    pub seg: SegmentArgs,
    /// Also write the network output as <stem>_flows.npy, float32 (3, H, W) = dY, dX, cellprob.
    #[arg(long)]
    pub save_flows: bool,
    /// Replace existing outputs.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `cytoseg segment`; returns 1 when any image failed.
pub fn run(cmd: SegmentCmd) -> Result<i32> {
    std::fs::create_dir_all(&cmd.out).map_err(|e| Error::io(&cmd.out, e))?;
    let model = cmd.model.load()?;
    let mut params = cmd.seg.params(&model);
    params.keep_flows = cmd.save_flows;
    let mut failed = 0;
    for path in &cmd.images {
        match segment_one(&model, &params, path, &cmd) {
            Ok(n) => log::info!("{}: {n} objects", path.display()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn segment_one(
    model: &Model,
    params: &SegmentParams,
    path: &std::path::Path,
    cmd: &SegmentCmd,
) -> Result<u32> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| Error::invalid(format!("{}: no file name", path.display())))?;
    let out = cmd.out.join(format!("{stem}_labels.tif"));
    if out.exists() && !cmd.overwrite {
        return Err(Error::invalid(format!(
            "{} already exists (use --overwrite to replace it)",
            out.display()
        )));
    }
    let image = read_image(path)?;
    let seg = model.segment(&image.view()?, params, None)?;
    write_labels(&out, &seg.labels, seg.height, seg.width, cmd.overwrite)?;
    if let Some(fl) = &seg.flows {
        let fpath = cmd.out.join(format!("{stem}_flows.npy"));
        write_atomic(&fpath, cmd.overwrite, |w| {
            npy::write(w, &[3, seg.height, seg.width], fl.concat())
        })?;
    }
    log::info!(
        "{}: preprocess {:.3}s, network {:.3}s, masks {:.3}s",
        path.display(),
        seg.timings.preprocess,
        seg.timings.network,
        seg.timings.masks
    );
    Ok(seg.count)
}

/// Arguments of `cytoseg models`.
#[derive(Debug, Args)]
pub struct ModelsCmd {
    /// Also load ONNX Runtime and list the execution providers it offers.
    #[arg(long)]
    pub providers: bool,
    /// ONNX Runtime library for --providers.
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

/// Runs `cytoseg models`.
pub fn models(cmd: ModelsCmd) -> Result<i32> {
    let found = list_models();
    if found.is_empty() {
        println!("no model packages found");
    }
    for (name, dir) in found {
        match crate::core::model::Manifest::read(&dir.join("manifest.json")) {
            Ok(m) => println!(
                "{name:<12} {:<8} {:<15} diameter {:>5.1}px  {}  ({})",
                m.version,
                m.family,
                m.diameter,
                m.description,
                dir.display()
            ),
            Err(e) => println!("{name:<12} invalid: {e}"),
        }
    }
    if cmd.providers {
        let rt = runtime::runtime(cmd.ort_lib.as_deref())?;
        println!("ONNX Runtime {} ({})", rt.version, rt.library.display());
        for (d, ok) in runtime::available_devices(rt) {
            println!(
                "  {:<9} {}",
                d.name(),
                if ok { "available" } else { "not available" }
            );
        }
    }
    Ok(0)
}
