//! `cytoseg train`: clone a model and fine-tune it on your own annotated images, natively
//! (no Python). Parses arguments, calls `cytoseg_core::train::train`, shows progress.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use cytoseg_core::error::{Error, Result};
use cytoseg_core::model::registry::resolve_model;
use cytoseg_core::train::{self, TrainOptions};

/// Arguments of `cytoseg train`.
#[derive(Debug, Args)]
#[command(after_long_help = TRAIN_AFTER_HELP)]
pub struct TrainCmd {
    /// The parent model: a bundled name (see `cytoseg models`) or a package folder. It is
    /// only read.
    #[arg(long, value_name = "MODEL", default_value = "nuclei")]
    pub from: String,
    /// Folder of training images.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Folder of their label images, paired by file stem (`x.tif` with `x.tif`, `x.png`,
    /// `x.npy`, `x_labels.tif`, `x_masks.tif` ...). May be the images folder (Cellpose's
    /// `x.tif` + `x_masks.tif` layout).
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,
    /// Folder of annotated-region masks (nonzero = annotated), paired by stem: pixels outside
    /// are ignored by the loss, so you may label everything inside one region and nothing
    /// else. Images without a mask count as annotated everywhere.
    #[arg(long, value_name = "DIR")]
    pub masks: Option<PathBuf>,
    /// Validation images (default: one image in ten held out when there are at least ten).
    #[arg(long, value_name = "DIR", requires = "val_labels")]
    pub val_images: Option<PathBuf>,
    /// Validation labels.
    #[arg(long, value_name = "DIR", requires = "val_images")]
    pub val_labels: Option<PathBuf>,
    /// The new model package folder (its name is the clone's name).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "name",
        conflicts_with = "name"
    )]
    pub out: Option<PathBuf>,
    /// Save the clone in your models folder under this name instead of --out, so that
    /// `--model NAME` finds it here, in Fiji and in napari ($CYTOSEG_USER_MODELS, default
    /// ~/.local/share/cytoseg/models on Linux). The name must be new.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Training steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Wall-time budget in minutes (the learning-rate schedule then ends with the time).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Crops per step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Crop edge in pixels (multiple of 16).
    #[arg(long, default_value_t = 128)]
    pub crop: usize,
    /// Peak learning rate (AdamW, warm-up then cosine decay).
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Typical object diameter in the training images, pixels (default: measured from the
    /// labels).
    #[arg(long)]
    pub diameter: Option<f64>,
    /// Object diameter the clone's network works at (default: the objects' diameter, at least
    /// the parent's and at most 30, Cellpose's cell scale).
    #[arg(long)]
    pub train_diameter: Option<f64>,
    /// Input channels of the clone (default: 3 when the parent takes one channel and every
    /// training image is colour (RGB), else the parent's). A one-channel parent is widened for
    /// colour or multi-channel images: each image channel then feeds the network (the first N
    /// channels of each image).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Where training runs: cpu (the native trainer runs on the CPU), or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Random seed (crops, augmentation, batches).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue an interrupted run from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// The clone's version.
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
}

const TRAIN_AFTER_HELP: &str = "\
Writes a new model package to --out (or, with --name, to your models folder, where every
face of cytoseg finds it by name): model.onnx (the parent's network with the trained
weights), manifest.json (with the lineage: parent and its sha256, every training file and
its sha256, every parameter, seed, losses, versions), MODEL_CARD.md, loss.csv and loss.png.
The parent is never modified. Ctrl-C saves a checkpoint; run the same command with --resume
to continue. Exit status: 0 trained, 2 error, 130 interrupted (checkpoint saved).

Example (clone -> correct -> retrain -> validate):
  cytoseg train --from nuclei --images mine/images --labels mine/labels --out models/mycells
  cytoseg validate --model models/mycells --images ref/images --truth ref/labels
  cytoseg segment plate/ --model models/mycells --out results
  cytoseg train --from cells-phase --images mine/images --labels mine/labels --name mycells
  cytoseg segment plate/ --model mycells --out results";

/// Runs `cytoseg train`.
pub fn run(cmd: TrainCmd, quiet: bool) -> Result<i32> {
    match cmd.device.as_str() {
        "auto" | "cpu" => {}
        "cuda" => {
            return Err(Error::invalid(
                "--device cuda: the native trainer runs on the CPU only in this version (inference runs on the GPU)",
            ));
        }
        d => return Err(Error::invalid(format!("--device {d}: use auto or cpu"))),
    }
    let dirs = cytoseg_host::cli_model_dirs();
    let from = resolve_model(&cmd.from, &dirs)?;
    let out = match (&cmd.out, &cmd.name) {
        (Some(out), _) => out.clone(),
        (None, Some(name)) => cytoseg_host::user_model_dir(name, &dirs)?,
        (None, None) => return Err(Error::invalid("give --out DIR or --name NAME")),
    };
    let mut opts = TrainOptions::new(&from, &cmd.images, &cmd.labels, &out);
    opts.masks = cmd.masks.clone();
    opts.val_images = cmd.val_images.clone();
    opts.val_labels = cmd.val_labels.clone();
    opts.steps = cmd.steps;
    opts.minutes = cmd.minutes;
    opts.batch_size = cmd.batch_size;
    opts.crop = cmd.crop;
    opts.learning_rate = cmd.learning_rate;
    opts.weight_decay = cmd.weight_decay;
    opts.diameter = cmd.diameter;
    opts.train_diameter = cmd.train_diameter;
    opts.channels = cmd.channels;
    opts.seed = cmd.seed;
    opts.resume = cmd.resume;
    opts.version = cmd.version.clone();
    opts.command = std::env::args().collect::<Vec<_>>().join(" ");

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // a second Ctrl-C while the checkpoint is written is ignored; kill -9 still works
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(opts.steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] step {pos}/{len}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let mut progress = |p: &train::TrainProgress| -> bool {
        let msg = format!(
            "loss {:.4}{}  lr {:.1e}  {:.2} s/step  ETA {}",
            p.loss,
            p.val_loss
                .map(|v| format!("  val {v:.4}"))
                .unwrap_or_default(),
            p.lr,
            p.elapsed_s / p.step.max(1) as f64,
            hms(p.eta_s)
        );
        match &bar {
            Some(b) => {
                b.set_position(p.step as u64);
                b.set_message(msg);
            }
            None if !quiet && (p.step.is_multiple_of(50) || p.step == p.steps) => {
                eprintln!("step {}/{}  {msg}", p.step, p.steps)
            }
            None => {}
        }
        !stop.load(Ordering::SeqCst)
    };
    let result = train::train(&opts, &mut progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Ok(r) => {
            if !quiet {
                println!(
                    "trained {} steps in {} on {} image(s) ({} validation); final loss {:.4}{}; \
objects' diameter {:.1} px; wrote {}",
                    r.steps,
                    hms(r.wall_s),
                    r.images.0,
                    r.images.1,
                    r.final_train_loss,
                    r.final_val_loss
                        .map(|v| format!(", validation loss {v:.4}"))
                        .unwrap_or_default(),
                    r.diameter,
                    r.out.display()
                );
            }
            Ok(0)
        }
        Err(Error::Cancelled) => {
            eprintln!(
                "interrupted: checkpoint saved in {}; continue with the same command and --resume",
                out.display()
            );
            Ok(130)
        }
        Err(e) => Err(e),
    }
}

fn hms(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
