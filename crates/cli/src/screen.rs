//! Screen options of `cytoseg segment` (fan-out selection, readouts) and `cytoseg merge`.

use std::path::PathBuf;

use clap::Args;
use cytoseg_core::error::{Error, Result};
use cytoseg_core::screen::merge::{MergeOptions, merge_runs};
use cytoseg_core::screen::readouts::Readouts;
use cytoseg_core::screen::select::{Selection, read_field_list};

/// Which fields of a screen this run processes (to fan a screen out over several runs).
#[derive(Debug, Args, Clone, Default)]
pub struct SelectArgs {
    /// Only the fields of these plates (repeat or separate with commas).
    #[arg(long, value_name = "PLATE", value_delimiter = ',')]
    pub plate: Vec<String>,
    /// Only the fields of these wells, e.g. B03 or B3 (repeat or separate with commas).
    #[arg(long, value_name = "WELL", value_delimiter = ',')]
    pub well: Vec<String>,
    /// Only the fields listed in a CSV with columns plate,well,site (plate and site optional),
    /// e.g. part of the output of --list-fields.
    #[arg(long, value_name = "CSV")]
    pub fields: Option<PathBuf>,
    /// Print the screen's (selected) fields as CSV (plate,well,site,files) and exit without
    /// segmenting: the list a workflow manager splits into runs.
    #[arg(long)]
    pub list_fields: bool,
}

impl SelectArgs {
    /// Whether any selection option was given.
    pub fn any(&self) -> bool {
        !self.plate.is_empty() || !self.well.is_empty() || self.fields.is_some() || self.list_fields
    }

    /// The selection, reading the field list.
    pub fn selection(&self) -> Result<Selection> {
        Ok(Selection {
            plates: self.plate.clone(),
            wells: self.well.clone(),
            fields: match &self.fields {
                Some(p) => read_field_list(p)?,
                None => Vec::new(),
            },
        })
    }
}

/// Per-well readouts and table formats.
#[derive(Debug, Args, Clone, Default)]
pub struct ReadoutArgs {
    /// A per-well value (a wells.csv column such as area_mean or intensity_mean-1_median; the
    /// unit may be left out) to draw as a plate heatmap and fit against dose, besides
    /// objects_per_field and the class fractions (repeat or separate with commas).
    #[arg(long = "value", value_name = "COLUMN", value_delimiter = ',')]
    pub values: Vec<String>,
    /// Also write the tables as Parquet: objects.parquet (every objects table), summary.parquet
    /// and, for screens, wells.parquet (pandas.read_parquet, R arrow, KNIME, DuckDB).
    #[arg(long)]
    pub parquet: bool,
}

impl ReadoutArgs {
    /// The core's readout options; an error for a value name no wells table can have.
    pub fn readouts(&self) -> Result<Readouts> {
        for v in &self.values {
            cytoseg_core::screen::readouts::check_value_name(v)?;
        }
        Ok(Readouts {
            values: self.values.clone(),
            parquet: self.parquet,
        })
    }
}

/// Arguments of `cytoseg merge`.
#[derive(Debug, Args)]
#[command(after_help = MERGE_AFTER_HELP)]
pub struct MergeCmd {
    /// Output folders of `cytoseg segment --layout` runs (one per plate, well or field list).
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// The merged output folder (none of the runs).
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    /// Readouts to draw.
    #[command(flatten)]
    pub readouts: ReadoutArgs,
    /// Merge runs made with different models (refused by default: their numbers are not
    /// comparable).
    #[arg(long)]
    pub allow_mixed_models: bool,
}

const MERGE_AFTER_HELP: &str = "\
Outputs, in --out (the runs are read, never changed):
  wells.csv            per well over all runs, recomputed from every objects table (a well split
                       between runs gets the statistics of all its objects); class fractions
  summary.csv          every run's rows, led by a run column
  plate_<plate>_<value>.svg, dose_response.csv, dose_response_<value>.svg   as a single run
  merge.json           each run's folder, model (name, version, SHA-256), engine version, command
  *.parquet            with --parquet

A field segmented by two runs, runs made with different models (without --allow-mixed-models)
or different classifiers, and folders that are not finished screen runs are errors; nothing is
written then.

Example (one run per well, then the plate):
  cytoseg segment plate/ --layout auto --list-fields > fields.csv
  cytoseg segment plate/ --layout auto --well B03 --out runs/B03     # ... one per well, anywhere
  cytoseg merge runs/* --out screen --value area_mean";

/// Runs `cytoseg merge`.
pub fn merge(cmd: MergeCmd, quiet: bool) -> Result<i32> {
    let opts = MergeOptions {
        readouts: cmd.readouts.readouts()?,
        allow_mixed_models: cmd.allow_mixed_models,
    };
    let s = merge_runs(&cmd.runs, &cmd.out, &opts)?;
    if !quiet {
        eprintln!(
            "merged {} run(s): {} field(s) in {} well(s); {}",
            s.runs,
            s.fields,
            s.wells,
            s.files
                .first()
                .ok_or_else(|| Error::invalid("nothing written"))?
                .display()
        );
    }
    Ok(0)
}
