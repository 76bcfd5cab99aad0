//! `cytoseg segment` and `cytoseg models`: run a model over images in batch, list the bundled
//! models.

use std::path::PathBuf;

use clap::Args;

use super::progress::Reporter;
use cytoseg_core::batch;
use cytoseg_core::error::{Error, Result};
use cytoseg_core::model::{
    ChannelChoice, Device, LoadOptions, Model, Precision, SegmentParams, Tiling, VolumeMode,
    list_models, runtime,
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
    /// ONNX Runtime library to use (default: ORT_DYLIB_PATH, beside the cytoseg executable, or
    /// python3's onnxruntime package).
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
            ort_search: cytoseg_host::cli_ort_search(self.ort_lib.as_deref()),
            model_dirs: cytoseg_host::cli_model_dirs(),
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
    /// How images are cut into network tiles: `fast` (default; whole images up to 1024² in one
    /// piece, larger ones in few large tiles) or `cellpose` (Cellpose's 256² tiles with 10%
    /// overlap: labels identical to Cellpose's pipeline; slower, as its network sees up to 3.5× more
    /// pixels).
    #[arg(long, default_value = "fast", value_parser = parse_tiling)]
    pub tiling: Tiling,
    /// Tile edge in pixels (multiple of 16; default: the model's with `--tiling cellpose`, the
    /// largest tile edge, 1024, with `--tiling fast`).
    #[arg(long)]
    pub tile_size: Option<usize>,
    /// Fractional tile overlap (default: the model's with `--tiling cellpose`, 0.0625 of the
    /// largest tile edge with `--tiling fast`).
    #[arg(long)]
    pub tile_overlap: Option<f64>,
    /// Tiles per network call.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Which copy of the network runs: `auto` (default: the model's int8 variant on the CPU
    /// with `--tiling fast`, not `--do-3d`, when its validated AP@0.5 is within 0.005 of
    /// float32's, else float32), `fp32` (exact: with `--tiling cellpose`, labels identical to
    /// Cellpose's) or
    /// `int8` (the model's int8 variant, CPU only; `cytoseg models` lists which have one).
    #[arg(long, default_value = "auto", value_parser = parse_precision)]
    pub precision: Precision,
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
        p.tiling = self.tiling;
        p.tile_size = self.tile_size;
        p.tile_overlap = self.tile_overlap;
        p.batch_size = self.batch_size;
        p.precision = self.precision;
        p
    }
}

/// `--precision`, parsed by the engine.
fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    Precision::parse(s).map_err(|e| e.to_string())
}

/// `--tiling`, parsed by the engine.
fn parse_tiling(s: &str) -> std::result::Result<Tiling, String> {
    Tiling::parse(s).map_err(|e| e.to_string())
}

/// Arguments of `cytoseg segment`.
#[derive(Debug, Args)]
#[command(after_long_help = SEGMENT_AFTER_HELP)]
pub struct SegmentCmd {
    /// Images (.tif/.tiff incl. OME-TIFF, ImageJ hyperstacks and BigTIFF, .png, .jpg, .npy),
    /// folders of them, or quoted glob patterns such as 'plate1/*.tif'.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Output folder (created if missing; not needed with --list-fields).
    #[arg(long, value_name = "DIR", required_unless_present = "list_fields")]
    pub out: Option<PathBuf>,
    /// Also take images from the sub-folders of folder inputs (outputs mirror the sub-folders).
    #[arg(short, long)]
    pub recursive: bool,
    /// Images processed at once (default: the number of cores, at most 4); fewer run when
    /// their estimated memory would exceed --max-memory.
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Memory the images in flight may use together, in GiB (default: 60% of the available
    /// memory).
    #[arg(long, value_name = "GiB")]
    pub max_memory: Option<f64>,
    /// Model selection.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Segmentation parameters.
    #[command(flatten)]
    pub seg: SegmentArgs,
    /// Do not write the per-object measurement tables (<stem>_objects.csv).
    #[arg(long)]
    pub no_objects: bool,
    /// Also write the network output as <stem>_flows.npy, float32 (3, H, W) = dY, dX, cellprob
    /// ((planes, 3, H, W) for stacks).
    #[arg(long)]
    pub save_flows: bool,
    /// Redo images finished by an earlier run and replace existing outputs.
    #[arg(long)]
    pub overwrite: bool,
    /// Segment z-stacks into 3-D objects as Cellpose's do_3D: the network on the stack's YX, ZY
    /// and ZX planes, the flows combined, 3-D flows followed to 3-D labels. Inputs must be
    /// z-stacks (2 planes or more, no time points).
    #[arg(long)]
    pub do_3d: bool,
    /// z spacing over xy pixel size for --do-3d (e.g. 2 when planes are twice as far apart as
    /// pixels); default: from the file's z spacing (ImageJ spacing=, OME PhysicalSizeZ), else 1.
    #[arg(
        long,
        value_name = "A",
        requires = "do_3d",
        allow_negative_numbers = true
    )]
    pub anisotropy: Option<f64>,
    /// Segment z-stacks plane by plane, then link each plane's objects to the previous plane's
    /// when their overlap (IoU) reaches T, as Cellpose's stitch_threshold (0.25 is usual):
    /// 3-D objects, holes filled and --min-size applied in 3-D.
    #[arg(
        long,
        value_name = "T",
        conflicts_with = "do_3d",
        allow_negative_numbers = true
    )]
    pub stitch_threshold: Option<f64>,
    /// Read the inputs as a screen: `auto` (ImageXpress or Opera/Operetta file names, detected),
    /// `imagexpress`, `operetta`, or a pattern with named fields (`{plate}`, `{well}` or
    /// `{row}`+`{column}`, `{site}`, `{channel}`), e.g. '{plate}/{well}_{site}_{channel}.tif'.
    /// Each field's channel files are read as one multi-channel image (--channel picks the
    /// segmentation channel by position in channel order; intensities are measured on all) and
    /// every table gains plate, well, row, column and site columns. Without --channel a
    /// one-channel model segments the first channel.
    #[arg(long, value_name = "LAYOUT")]
    pub layout: Option<String>,
    /// Write the QC report (OUT/qc/qc_report.html, see `cytoseg qc`) at the end of the run.
    #[arg(long)]
    pub qc: bool,
    /// Classify every object with a model from `cytoseg classify train` (adds class columns to
    /// the objects tables and, for screens, class fractions to wells.csv).
    #[arg(long, value_name = "MODEL")]
    pub classifier: Option<PathBuf>,
    /// QC grouping and thresholds (with --qc).
    #[command(flatten)]
    pub qc_args: super::qc::QcArgs,
    /// Fan-out: which fields of a screen this run segments (with --layout).
    #[command(flatten)]
    pub select: super::screen::SelectArgs,
    /// Per-well readouts and Parquet tables.
    #[command(flatten)]
    pub readout_args: super::screen::ReadoutArgs,
}

const SEGMENT_AFTER_HELP: &str = "\
Outputs, in --out:
  <stem>_labels.tif    labels, uint16 (uint32 past 65,535 objects), the input's pixel size kept;
                       stacks as ImageJ hyperstacks, segmented plane by plane (numbering per
                       plane), or into 3-D objects with --do-3d or --stitch-threshold
  <stem>_objects.csv   one row per object: shape and per-channel intensity measurements,
                       calibrated when the input carries a pixel size
  summary.csv          one row per image: status, error, planes, objects, area statistics, time,
                       QC measures (focus, saturation, background, signal, noise, dynamic range,
                       network confidence; see `cytoseg qc` and docs/qc.md)
  run.json             versions (cytoseg, model + SHA-256, ONNX Runtime + provider), every
                       parameter, input SHA-256s, start and end times (UTC)
  .cytoseg/            per-image records used to resume

Re-running the same command skips finished images (same input, model and parameters, outputs
intact) and redoes the rest, e.g. after an interruption; --overwrite redoes everything.
An image that fails is reported in summary.csv and the log; the others go on.
Exit status: 0 all images ok or skipped, 1 some image failed, 2 the run could not start.

Stacks: multi-page TIFFs are z (or t) stacks; ImageJ hyperstacks and OME-TIFF give their axes.
3-D (--do-3d, or --stitch-threshold T): z-stacks become 3-D objects as in Cellpose 4 (the stack
normalized as one volume); objects tables then measure volumes (area = volume, centroids and
boxes in z, y, x) with the file's z spacing (or --anisotropy × pixel size, else 1 pixel);
--save-flows writes (4, Z, Y, X) = dZ, dY, dX, cellprob in 3-D mode.
Channels: --channel picks the model's input channel(s); intensities are measured on all.

Screens (--layout): wells.csv (one row per well: fields, objects, mean/median/std of every
measurement, plate-map columns, class fractions), plate_<plate>_<value>.svg heatmaps (--value
adds values), dose_response.csv and dose_response_<value>.svg when the plate map gives treatment
and concentration. --list-fields, --plate, --well and --fields fan a screen out over runs;
`cytoseg merge` joins them. --parquet adds objects.parquet, summary.parquet and wells.parquet.

Examples:
  cytoseg segment images/ --out results
  cytoseg segment 'plate*/**/*.tif' --out results --diameter 25 --jobs 2
  cytoseg segment experiment/ --recursive --out results --device cuda
  cytoseg segment stacks/ --do-3d --anisotropy 2 --out results3d
  cytoseg segment plate/ --layout auto --plate-map map.csv --value area_mean --out screen";

impl SegmentCmd {
    /// How stacks are segmented, from --do-3d, --anisotropy and --stitch-threshold.
    fn stack_mode(&self) -> Result<batch::StackMode> {
        let mode = match (self.do_3d, self.stitch_threshold) {
            (true, _) => batch::StackMode::Flows3d {
                anisotropy: self.anisotropy,
            },
            (false, Some(threshold)) => batch::StackMode::Stitch { threshold },
            (false, None) => batch::StackMode::Planes,
        };
        // Parameter errors before any image is read.
        match mode {
            batch::StackMode::Flows3d {
                anisotropy: Some(a),
            } => VolumeMode::Flows3d { anisotropy: a }.validate()?,
            batch::StackMode::Stitch { threshold } => {
                VolumeMode::Stitch { threshold }.validate()?
            }
            _ => {}
        }
        if mode.is_3d() && self.classifier.is_some() {
            return Err(Error::invalid(
                "--classifier classifies 2-D objects; it cannot be combined with --do-3d or --stitch-threshold yet",
            ));
        }
        Ok(mode)
    }
}

/// Runs `cytoseg segment`; returns 1 when any image failed.
pub fn run(cmd: SegmentCmd, quiet: bool) -> Result<i32> {
    // Present unless --list-fields (clap checks), which writes nothing.
    let out = cmd.out.clone().unwrap_or_default();
    let readouts = cmd.readout_args.readouts()?;
    let inputs = match cmd.layout.as_deref() {
        None if cmd.select.any() || !cmd.readout_args.values.is_empty() => {
            return Err(Error::invalid(
                "--plate, --well, --fields, --list-fields and --value are for screens: add --layout",
            ));
        }
        None => batch::expand_inputs(&cmd.inputs, cmd.recursive, &out)?,
        Some(l) => {
            let layout = match l {
                "auto" => None,
                other => Some(cytoseg_core::screen::Layout::parse(other)?),
            };
            let plate_map = cmd
                .qc_args
                .plate_map
                .as_deref()
                .map(cytoseg_core::screen::platemap::PlateMap::read)
                .transpose()?;
            let (layout, inputs) = cytoseg_core::screen::expand_screen(
                &cmd.inputs,
                cmd.recursive,
                &out,
                layout.as_ref(),
                plate_map.as_ref(),
            )?;
            let inputs = cmd.select.selection()?.apply(inputs)?;
            if cmd.select.list_fields {
                print!("{}", cytoseg_core::screen::select::fields_csv(&inputs));
                return Ok(0);
            }
            if !quiet {
                eprintln!(
                    "screen layout {}: {} field(s) of {} channel(s)",
                    layout.name(),
                    inputs.len(),
                    inputs.first().map_or(0, |i| i.channels.len())
                );
            }
            inputs
        }
    };
    if inputs.is_empty() {
        return Err(Error::invalid("no input images found"));
    }
    let model = cmd.model.load()?;
    let mut params = cmd.seg.params(&model);
    if cmd.layout.is_some() && cmd.seg.channel.is_none() && model.manifest.input.channels == 1 {
        params.channels =
            ChannelChoice::Select(vec![cytoseg_core::screen::DEFAULT_SEGMENTATION_CHANNEL]);
    }
    params.keep_flows = cmd.save_flows;
    let opts = batch::BatchOptions {
        out: out.clone(),
        jobs: batch::default_jobs(cmd.jobs),
        memory_budget: memory_budget(cmd.max_memory)?,
        overwrite: cmd.overwrite,
        measure: !cmd.no_objects,
        save_flows: cmd.save_flows,
        run_files: true,
        invocation: serde_json::json!(std::env::args().collect::<Vec<_>>()),
        readouts,
        stack_mode: cmd.stack_mode()?,
        classifier: match &cmd.classifier {
            Some(p) if cmd.no_objects => {
                return Err(Error::invalid(format!(
                    "--classifier {} needs the objects tables (drop --no-objects)",
                    p.display()
                )));
            }
            Some(p) => Some(std::sync::Arc::new(
                cytoseg_core::classify::Classifier::load(p)?,
            )),
            None => None,
        },
    };
    if !quiet {
        eprintln!(
            "cytoseg {}: {} image(s), model {} {} on {} (ONNX Runtime {}), {} job(s)",
            cytoseg_core::VERSION,
            inputs.len(),
            model.manifest.name,
            model.manifest.version,
            model.device.name(),
            model.runtime.version,
            opts.jobs
        );
    }
    // The output folder is created only now that the run can start: a bad model or device
    // leaves nothing behind.
    let reporter = Reporter::new(inputs.len(), quiet);
    let report = batch::segment_folder(&model, &params, &inputs, &opts, &reporter);
    reporter.finish();
    let report = report?;
    let c = report.counts;
    if !quiet || c.failed > 0 {
        eprintln!(
            "{} ok, {} skipped (finished earlier), {} failed in {:.1} s; summary: {}",
            c.ok,
            c.skipped,
            c.failed,
            report.seconds,
            out.join("summary.csv").display()
        );
    }
    if cmd.qc {
        let qc = cytoseg_core::qc::report::qc_report(&out, &cmd.qc_args.options())?;
        super::qc::print_verdict(&qc, quiet);
    }
    Ok(if c.failed > 0 { 1 } else { 0 })
}

/// `--max-memory` in bytes, or the engine's default (60% of the available memory).
pub fn memory_budget(gib: Option<f64>) -> Result<u64> {
    match gib {
        Some(g) if g.is_finite() && g > 0.0 => Ok((g * (1u64 << 30) as f64) as u64),
        Some(g) => Err(Error::invalid(format!(
            "--max-memory {g}: expected a positive number of GiB"
        ))),
        None => Ok(batch::default_memory_budget()),
    }
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

/// Runs `cytoseg models`: every package found by name, what each is for, and how to choose.
pub fn models(cmd: ModelsCmd) -> Result<i32> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let found = list_models(&cytoseg_host::cli_model_dirs());
    if found.is_empty() {
        let _ = writeln!(out, "no model packages found");
    }
    for (name, dir) in &found {
        match cytoseg_core::model::Manifest::read(&dir.join("manifest.json")) {
            Ok(m) => {
                let _ = writeln!(
                    out,
                    "{name}  {}  ({} channel{}, objects ~{:.0} px)  {}",
                    m.version,
                    m.input.channels,
                    if m.input.channels == 1 { "" } else { "s" },
                    m.default_diameter.unwrap_or(m.diameter),
                    dir.display()
                );
                if !m.use_for.is_empty() {
                    let _ = writeln!(out, "    for: {}", m.use_for);
                }
                let _ = writeln!(out, "    {}", m.description);
                for v in &m.variants {
                    let _ = match &v.validation {
                        Some(val) => writeln!(
                            out,
                            "    {} variant: AP@0.5 {:.4} vs float32 {:.4} on {} validation images{}",
                            v.precision,
                            val.ap50,
                            val.ap50_fp32,
                            val.images,
                            if cytoseg_core::model::Precision::validated(v) {
                                " (used by --precision auto on the CPU)"
                            } else {
                                ""
                            }
                        ),
                        None => writeln!(out, "    {} variant (not validated)", v.precision),
                    };
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{name}  invalid: {e}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nPick the model whose `for:` matches your images and check it on a few of your own \
         annotated images (cytoseg validate). If none is good enough, correct its masks on \
         some images and clone it: cytoseg train --from <model> --images ... --labels ... \
         --name <new name>."
    );
    match cytoseg_host::user_models_dir() {
        Some(d) => {
            let _ = writeln!(
                out,
                "Your models folder (clones saved with --name, from Fiji or napari): {}",
                d.display()
            );
        }
        None => {
            let _ = writeln!(out, "Your models folder: none (set CYTOSEG_USER_MODELS)");
        }
    }
    if cmd.providers {
        let rt = runtime::runtime(&cytoseg_host::cli_ort_search(cmd.ort_lib.as_deref()))?;
        let _ = writeln!(
            out,
            "ONNX Runtime {} ({})",
            rt.version,
            rt.library.display()
        );
        for (d, ok) in runtime::available_devices(rt) {
            let _ = writeln!(
                out,
                "  {:<9} {}",
                d.name(),
                if ok { "available" } else { "not available" }
            );
        }
    }
    print_all(&out);
    Ok(0)
}

/// Writes `text` to standard output; a reader that stopped reading (`cytoseg models | head`,
/// `grep -q`) ends the output quietly instead of a panic.
fn print_all(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
