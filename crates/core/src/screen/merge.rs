//! Merging the runs of a screen that was fanned out (one run per plate, well or field list,
//! each into its own output folder) into the readouts of one run: `wells.csv` recomputed from
//! every run's objects tables (so a well whose fields were split between runs gets the
//! statistics of all its objects, not an average of averages), class fractions, `summary.csv`
//! (every run's rows, led by a `run` column), the heatmaps and dose-response fits, optionally
//! the Parquet tables, and `merge.json` recording each run's model and engine version.
//!
//! The runs' files are read, never changed; the objects tables stay where they are (the merged
//! `objects.parquet` names each row's source).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::readouts::{Readouts, concat_tables, read_table, write_readouts};
use super::wells::{wells_csv, wells_of_runs, write_text};
use crate::batch::Outcome;
use crate::error::{Error, Result};
use crate::measure::csv_field;

/// How to merge.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// The readouts to draw (values, Parquet).
    pub readouts: Readouts,
    /// Merge runs made with different models (by SHA-256) or classifiers; refused otherwise,
    /// since their numbers are not comparable.
    pub allow_mixed_models: bool,
}

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    /// Runs merged.
    pub runs: usize,
    /// Fields over the runs.
    pub fields: usize,
    /// Wells over the runs.
    pub wells: usize,
    /// Files written, `wells.csv` first.
    pub files: Vec<PathBuf>,
}

/// One run to merge.
struct Run {
    dir: PathBuf,
    manifest: serde_json::Value,
    outcomes: Vec<Outcome>,
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn read_run(dir: &Path) -> Result<Run> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::invalid(format!(
            "{}: {e}; not the output folder of a finished cytoseg segment run",
            path.display()
        ))
    })?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
    let outcomes: Vec<Outcome> = crate::batch::finished_outcomes(dir)?
        .into_iter()
        .filter(|o| o.fields.contains_key("plate") && o.fields.contains_key("well"))
        .collect();
    if outcomes.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no finished screen fields (segment a screen with --layout to merge it)",
            dir.display()
        )));
    }
    Ok(Run {
        dir: dir.to_path_buf(),
        manifest,
        outcomes,
    })
}

fn field_key(o: &Outcome) -> String {
    let f = |k: &str| o.fields.get(k).map(String::as_str).unwrap_or("");
    format!("plate {} well {} site {}", f("plate"), f("well"), f("site"))
}

/// Merges the screen runs `runs` (output folders of `cytoseg segment --layout`) into `out`,
/// which must be none of them. Errors, naming the runs and the field, when a field was
/// finished by two runs, when runs used different models (unless allowed), or when a folder
/// is not a finished screen run; nothing is written then.
pub fn merge_runs(runs: &[PathBuf], out: &Path, opts: &MergeOptions) -> Result<MergeSummary> {
    if runs.is_empty() {
        return Err(Error::invalid("no runs to merge"));
    }
    for r in runs {
        if same_folder(r, out) {
            return Err(Error::invalid(format!(
                "the merged output {} is one of the runs; merge into a new folder",
                out.display()
            )));
        }
    }
    let runs: Vec<Run> = runs.iter().map(|r| read_run(r)).collect::<Result<_>>()?;
    // Each field once.
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    for r in &runs {
        for o in &r.outcomes {
            let k = field_key(o);
            if let Some(first) = seen.insert(k.clone(), &r.dir) {
                return Err(Error::invalid(format!(
                    "{k} was segmented by two runs, {} and {}; merge each field once",
                    first.display(),
                    r.dir.display()
                )));
            }
        }
    }
    // One model.
    let model = |r: &Run| {
        let m = &r.manifest["model"];
        format!(
            "{} {} (sha256 {})",
            m["name"].as_str().unwrap_or("?"),
            m["version"].as_str().unwrap_or("?"),
            m["sha256"].as_str().unwrap_or("?")
        )
    };
    if !opts.allow_mixed_models
        && let Some(other) = runs.iter().find(|r| model(r) != model(&runs[0]))
    {
        return Err(Error::invalid(format!(
            "{} used model {}, {} model {}; their numbers are not comparable (allow mixed models to merge anyway)",
            runs[0].dir.display(),
            model(&runs[0]),
            other.dir.display(),
            model(other)
        )));
    }
    let tables: Vec<PathBuf> = runs
        .iter()
        .flat_map(|r| {
            r.outcomes.iter().flat_map(|o| {
                o.outputs
                    .keys()
                    .filter(|k| k.ends_with("_objects.csv"))
                    .map(|k| r.dir.join(k))
            })
        })
        .collect();
    let mut classes: Option<(Vec<String>, &Path)> = None;
    for t in &tables {
        let c = super::classes::table_classes(t)?;
        if c.is_empty() {
            continue;
        }
        match &classes {
            None => classes = Some((c, t)),
            Some((first, at)) if *first != c => {
                return Err(Error::invalid(format!(
                    "{} was classified into {}, {} into {}: merge runs classified with one classifier",
                    at.display(),
                    first.join(", "),
                    t.display(),
                    c.join(", ")
                )));
            }
            Some(_) => {}
        }
    }

    let parts: Vec<(&Path, &[Outcome])> = runs
        .iter()
        .map(|r| (r.dir.as_path(), r.outcomes.as_slice()))
        .collect();
    let ws = wells_of_runs(&parts)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let wells = out.join("wells.csv");
    write_text(&wells, &wells_csv(&ws))?;
    if let Some((c, _)) = &classes {
        super::classes::add_class_fractions(&wells, &tables, c)?;
    }
    let summary = out.join("summary.csv");
    write_text(&summary, &merged_summary(&runs)?)?;
    let record = serde_json::json!({
        "cytoseg_version": crate::VERSION,
        "merged_utc": crate::batch::utc_now(),
        "fields": runs.iter().map(|r| r.outcomes.len()).sum::<usize>(),
        "wells": ws.len(),
        "runs": runs.iter().map(|r| serde_json::json!({
            "folder": r.dir.display().to_string(),
            "cytoseg_version": r.manifest["cytoseg_version"],
            "model": r.manifest["model"],
            "command": r.manifest["command"],
            "finished_utc": r.manifest["finished_utc"],
            "fields": r.outcomes.len(),
            "objects": r.outcomes.iter().map(|o| o.objects).sum::<u64>(),
        })).collect::<Vec<_>>(),
    });
    let merge_json = out.join("merge.json");
    crate::batch::write_json(&merge_json, &record)?;
    let mut files = vec![wells, summary, merge_json];
    files.extend(write_readouts(out, &tables, &opts.readouts)?);
    Ok(MergeSummary {
        runs: runs.len(),
        fields: runs.iter().map(|r| r.outcomes.len()).sum(),
        wells: ws.len(),
        files,
    })
}

/// Every run's `summary.csv` rows (screen fields and others alike), led by a `run` column with
/// the run's folder, under the union of their columns.
fn merged_summary(runs: &[Run]) -> Result<String> {
    let parts = runs
        .iter()
        .map(|r| {
            let (h, rs) = read_table(&r.dir.join("summary.csv"))?;
            Ok((r.dir.display().to_string(), h, rs))
        })
        .collect::<Result<Vec<_>>>()?;
    let (header, rows) = concat_tables("run", parts);
    let line = |v: &[String]| v.iter().map(|x| csv_field(x)).collect::<Vec<_>>().join(",");
    let mut s = line(&header);
    s.push('\n');
    for r in rows {
        s += &line(&r);
        s.push('\n');
    }
    Ok(s)
}
