//! `cytoseg classify train` and `cytoseg classify apply`: the per-object phenotype classifier.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use cytoseg_core::classify::{
    Classifier, TrainOptions, apply_folder, confusion_csv, confusion_svg, confusion_text, train,
};
use cytoseg_core::error::{Error, Result};

const TRAIN_HELP: &str = "\
Labels CSV: columns image,label,class, one labelled object per line; image is the output stem
(sub/x for OUT/sub/x_objects.csv), the input path as the run recorded it, or its file name.
Features: every measurement column of the objects tables (area, shape, intensity per channel)
and the texture (GLCM contrast, dissimilarity, homogeneity, ASM, energy, correlation per
channel) computed from <stem>_labels.tif and the input image.
Writes MODEL (JSON: features, classes, training-data SHA-256s, cross-validation numbers, forest),
MODEL's stem + _confusion.csv and _confusion.svg (cross-validated confusion matrix).
Examples:
  cytoseg segment images/ --out results
  cytoseg classify train --objects results --labels labels.csv --out phenotype.json
  cytoseg classify train --objects results --labels labels.csv --out m.json --trees 500 --folds 10";

const APPLY_HELP: &str = "\
Adds class, class_probability and probability_<class> columns to every <stem>_objects.csv of
OUT (replacing earlier ones: re-runnable) and, when OUT/wells.csv exists, fraction_<class>
columns per well. Objects with a non-finite feature get an empty class.
Examples:
  cytoseg classify apply phenotype.json results
  cytoseg segment plate/ --layout auto --out screen --classifier phenotype.json  # during a run";

/// `cytoseg classify` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClassifyCmd {
    /// Train a classifier on labelled objects of a segment output folder; report its
    /// cross-validated accuracy and confusion matrix.
    #[command(after_long_help = TRAIN_HELP)]
    Train(TrainArgs),
    /// Classify every object of a segment output folder with a trained model.
    #[command(after_long_help = APPLY_HELP)]
    Apply(ApplyArgs),
}

/// Arguments of `cytoseg classify train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Output folder of `cytoseg segment` holding the objects tables.
    #[arg(long, value_name = "OUT")]
    pub objects: PathBuf,
    /// CSV with columns image,label,class.
    #[arg(long, value_name = "CSV")]
    pub labels: PathBuf,
    /// Model file to write (JSON).
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,
    /// Trees in the forest.
    #[arg(long, default_value_t = TrainOptions::default().trees, value_name = "N")]
    pub trees: usize,
    /// Random seed (bootstrap samples, feature subsets, folds).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Cross-validation folds.
    #[arg(long, default_value_t = TrainOptions::default().folds, value_name = "K")]
    pub folds: usize,
}

/// Arguments of `cytoseg classify apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Model file from `cytoseg classify train`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Output folder of `cytoseg segment`.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

/// `MODEL`'s sibling `<stem><suffix>`.
fn beside(model: &Path, suffix: &str) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "classifier".into());
    model.with_file_name(format!("{stem}{suffix}"))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Runs `cytoseg classify`.
pub fn run(cmd: ClassifyCmd, quiet: bool) -> Result<i32> {
    match cmd {
        ClassifyCmd::Train(a) => {
            let opts = TrainOptions {
                trees: a.trees,
                seed: a.seed,
                folds: a.folds,
            };
            let c = train(&a.objects, &a.labels, &opts)?;
            c.save(&a.out)?;
            let (csv, svg) = (
                beside(&a.out, "_confusion.csv"),
                beside(&a.out, "_confusion.svg"),
            );
            write(&csv, &confusion_csv(&c))?;
            write(&svg, &confusion_svg(&c))?;
            if !quiet {
                let n: usize = c.training.objects_per_class.values().sum();
                println!(
                    "{} labelled objects in {} table(s), {} classes, {} features, {} trees",
                    n,
                    c.training.tables.len(),
                    c.classes.len(),
                    c.features.len(),
                    c.trees
                );
                print!("{}", confusion_text(&c));
                println!(
                    "wrote {}, {}, {}",
                    a.out.display(),
                    csv.display(),
                    svg.display()
                );
            }
            Ok(0)
        }
        ClassifyCmd::Apply(a) => {
            let c = Classifier::load(&a.model)?;
            let s = apply_folder(&c, &a.out)?;
            if !quiet {
                println!(
                    "{} objects classified in {} table(s){}",
                    s.objects,
                    s.tables,
                    if s.unclassified > 0 {
                        format!(
                            ", {} left unclassified (non-finite features)",
                            s.unclassified
                        )
                    } else {
                        String::new()
                    }
                );
                for (class, n) in &s.per_class {
                    println!("  {class}: {n}");
                }
                if let Some(w) = &s.wells {
                    println!("class fractions added to {}", w.display());
                }
            }
            Ok(0)
        }
    }
}
