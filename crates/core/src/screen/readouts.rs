//! What a screen's wells table is turned into: a plate heatmap per plate and chosen per-well
//! value (`plate_<plate>_<value>.svg`), a four-parameter logistic fit per treatment and value
//! where the plate map gives concentrations (`dose_response.csv`,
//! `dose_response_<value>.svg`), and the run's tables as Parquet (`wells.parquet`,
//! `summary.parquet`, `objects.parquet`).
//!
//! Everything is drawn from `wells.csv` as written (after a classifier added its
//! `fraction_<class>` columns), so a run, `cytoseg classify apply` and `cytoseg merge` give the
//! same pictures for the same table.

use std::path::{Path, PathBuf};

use super::dose::{self, DoseFit};
use super::wells::{heatmap_svg, write_text};
use crate::error::{Error, Result};
use crate::measure::csv_field;
use crate::qc::report::parse_csv;

/// The per-well value always drawn.
pub const DEFAULT_VALUE: &str = "objects_per_field";

/// Which readouts to draw besides the default ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readouts {
    /// Per-well values (columns of `wells.csv`, e.g. `area_mean`, `intensity_mean-1_median`;
    /// a unit in brackets may be left out) drawn as heatmaps and fitted against dose, besides
    /// `objects_per_field` and every `fraction_<class>`, which always are.
    pub values: Vec<String>,
    /// Also write `wells.parquet`, `summary.parquet` and `objects.parquet`.
    pub parquet: bool,
}

/// A CSV table: header and rows (blank lines dropped).
pub(crate) fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = parse_csv(&text);
    rows.retain(|r| !(r.len() == 1 && r[0].is_empty()));
    if rows.is_empty() {
        return Err(Error::format(path, "empty table"));
    }
    let header = rows.remove(0);
    Ok((header, rows))
}

/// A column name with its unit left out: `area [px]_mean` → `area_mean`.
fn without_unit(name: &str) -> String {
    match (name.find(" ["), name.find(']')) {
        (Some(a), Some(b)) if b > a => format!("{}{}", &name[..a], &name[b + 1..]),
        _ => name.to_string(),
    }
}

/// The wells-table columns to draw: `objects_per_field`, every `fraction_<class>`, then each
/// of `requested` (matched exactly, or with the unit left out), without repeats. An error
/// naming the value and the table's numeric per-well columns when a requested one is absent.
pub fn resolve_values(header: &[String], requested: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = header
        .iter()
        .filter(|h| *h == DEFAULT_VALUE || h.starts_with("fraction_"))
        .cloned()
        .collect();
    for r in requested {
        let found = header
            .iter()
            .find(|h| *h == r)
            .or_else(|| header.iter().find(|h| without_unit(h) == *r));
        match found {
            Some(h) => {
                if !out.contains(h) {
                    out.push(h.clone())
                }
            }
            None => {
                let known: Vec<String> = header
                    .iter()
                    .filter(|h| {
                        *h == "objects" || *h == DEFAULT_VALUE || h.starts_with("fraction_") || {
                            let b = without_unit(h);
                            b.ends_with("_mean") || b.ends_with("_median") || b.ends_with("_std")
                        }
                    })
                    .map(|h| without_unit(h))
                    .collect();
                return Err(Error::invalid(format!(
                    "no per-well value {r:?} in wells.csv; it has: {}",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// Checks, before a run, that `name` can be a per-well value: `objects`, `objects_per_field`,
/// `fraction_<class>`, or `<measurement>_mean|_median|_std` for a shape measurement, a
/// per-channel intensity (`intensity_mean-1`) or a class probability — so that a typo fails at
/// once, not after the run. Whether the run's table has it is checked when it is drawn.
pub fn check_value_name(name: &str) -> Result<()> {
    let n = without_unit(name);
    if n == "objects" || n == DEFAULT_VALUE || n.starts_with("fraction_") {
        return Ok(());
    }
    let base = ["_mean", "_median", "_std"]
        .iter()
        .find_map(|k| n.strip_suffix(k));
    let summarised = |b: &str| {
        let shape = crate::measure::SHAPE_COLUMNS.iter().any(|c| {
            *c == b && !c.starts_with("centroid") && !c.starts_with("bbox") && *c != "label"
        });
        let intensity = crate::measure::INTENSITY_COLUMNS.iter().any(|c| {
            b.strip_prefix(c)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|d| d.is_ascii_digit()))
        });
        shape || intensity || b == "class_probability" || b.starts_with("probability_")
    };
    if base.is_some_and(summarised) {
        return Ok(());
    }
    let shapes: Vec<&str> = crate::measure::SHAPE_COLUMNS
        .iter()
        .copied()
        .filter(|c| !c.starts_with("centroid") && !c.starts_with("bbox") && *c != "label")
        .collect();
    Err(Error::invalid(format!(
        "{name:?} is not a per-well value: use objects_per_field, fraction_<class>, or a measurement with _mean, _median or _std, the measurements being {}, {}-<channel> and probability_<class>",
        shapes.join(", "),
        crate::measure::INTENSITY_COLUMNS.join("-<channel>, ")
    )))
}

/// `s` with everything but ASCII letters, digits, `-` and `_` replaced by `_` (for file names).
pub fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Draws the readouts of `OUT/wells.csv` into `out` (none without it): heatmaps per plate and
/// value, dose-response fits where the table has `treatment` and `concentration`; and with
/// `readouts.parquet` the Parquet tables (objects from `objects_tables`), for any run. Returns
/// the files written.
pub fn write_readouts(
    out: &Path,
    objects_tables: &[PathBuf],
    readouts: &Readouts,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let wells = out.join("wells.csv");
    if wells.is_file() {
        written.extend(draw_wells(out, &wells, &readouts.values)?);
    }
    if readouts.parquet {
        written.extend(write_parquet_tables(out, objects_tables)?);
    }
    Ok(written)
}

/// Whether `out` holds Parquet tables of an earlier run (then rewritten when its tables change).
pub fn has_parquet(out: &Path) -> bool {
    ["wells", "summary", "objects"]
        .iter()
        .any(|n| out.join(format!("{n}.parquet")).is_file())
}

/// The heatmaps and dose-response fits of the wells table `wells` for `requested` values.
fn draw_wells(out: &Path, wells: &Path, requested: &[String]) -> Result<Vec<PathBuf>> {
    let (header, rows) = read_table(wells)?;
    let values = resolve_values(&header, requested)?;
    let col = |n: &str| header.iter().position(|h| h == n);
    let (Some(pc), Some(wc)) = (col("plate"), col("well")) else {
        return Err(Error::format(wells, "no plate and well columns"));
    };
    let num = |r: &Vec<String>, c: usize| {
        r.get(c)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let mut written = Vec::new();
    let mut plates: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.get(pc))
        .map(|s| s.as_str())
        .collect();
    plates.dedup();
    for value in &values {
        let vc = col(value).expect("resolved from the header");
        for plate in &plates {
            let cells: Vec<(u32, u32, f64)> = rows
                .iter()
                .filter(|r| r.get(pc).map(String::as_str) == Some(*plate))
                .filter_map(|r| {
                    let (row, column) = super::parse_well(r.get(wc)?)?;
                    Some((row, column, num(r, vc)?))
                })
                .collect();
            let path = out.join(format!(
                "plate_{}_{}.svg",
                file_safe(plate),
                file_safe(&without_unit(value))
            ));
            write_text(&path, &heatmap_svg(plate, value, &cells))?;
            written.push(path);
        }
    }
    written.extend(write_dose_response(out, &header, &rows, &values)?);
    Ok(written)
}

/// With `treatment` and `concentration` columns: per value, a four-parameter logistic per
/// treatment (wells with `control` = yes left out of the fits, drawn as a line at their mean),
/// all in `dose_response.csv` and one `dose_response_<value>.svg` per value.
fn write_dose_response(
    out: &Path,
    header: &[String],
    rows: &[Vec<String>],
    values: &[String],
) -> Result<Vec<PathBuf>> {
    let col = |n: &str| header.iter().position(|h| h == n);
    let (Some(tc), Some(cc)) = (col("treatment"), col("concentration")) else {
        return Ok(Vec::new());
    };
    let control = |r: &Vec<String>| {
        col("control")
            .and_then(|c| r.get(c))
            .is_some_and(|c| super::platemap::is_control(c))
    };
    let mut csv = String::from("treatment,value,wells,concentrations,bottom,top,ec50,hill,r2\n");
    let mut written = Vec::new();
    for value in values {
        let vc = col(value).expect("resolved from the header");
        let v = |r: &Vec<String>| {
            r.get(vc)
                .and_then(|x| x.trim().parse::<f64>().ok())
                .filter(|x| x.is_finite())
        };
        let mut fits: Vec<DoseFit> = Vec::new();
        for r in rows.iter().filter(|r| !control(r)) {
            let (Some(t), Some(c), Some(y)) = (
                r.get(tc).filter(|t| !t.is_empty()),
                r.get(cc).and_then(|c| c.trim().parse::<f64>().ok()),
                v(r),
            ) else {
                continue;
            };
            match fits.iter_mut().find(|f| &f.treatment == t) {
                Some(f) => f.points.push((c, y)),
                None => fits.push(DoseFit {
                    treatment: t.clone(),
                    points: vec![(c, y)],
                    curve: None,
                    r2: f64::NAN,
                }),
            }
        }
        if fits.is_empty() {
            continue;
        }
        for f in fits.iter_mut() {
            if let Some((c, r2)) = dose::fit(&f.points) {
                f.curve = Some(c);
                f.r2 = r2;
            }
            let mut xs: Vec<f64> = f.points.iter().map(|p| p.0).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            let cells = match f.curve {
                Some(c) => format!("{},{},{},{},{}", c.bottom, c.top, c.ec50, c.hill, f.r2),
                None => ",,,,".into(),
            };
            csv += &format!(
                "{},{},{},{},{cells}\n",
                csv_field(&f.treatment),
                csv_field(value),
                f.points.len(),
                xs.len()
            );
        }
        let controls: Vec<f64> = rows.iter().filter(|r| control(r)).filter_map(v).collect();
        let control_mean =
            (!controls.is_empty()).then(|| controls.iter().sum::<f64>() / controls.len() as f64);
        let plot = out.join(format!(
            "dose_response_{}.svg",
            file_safe(&without_unit(value))
        ));
        write_text(
            &plot,
            &dose::plot_svg(
                &format!("Dose-response: {value}"),
                value,
                &fits,
                control_mean,
            ),
        )?;
        written.push(plot);
    }
    if written.is_empty() {
        return Ok(written);
    }
    let table = out.join("dose_response.csv");
    write_text(&table, &csv)?;
    written.insert(0, table);
    Ok(written)
}

/// Tables `(lead value, header, rows)` one after the other under the union of their columns
/// (first-seen order), led by a column `lead` holding each table's lead value; every row as
/// long as the header.
pub(crate) fn concat_tables(
    lead: &str,
    tables: Vec<(String, Vec<String>, Vec<Vec<String>>)>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = vec![lead.to_string()];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (value, h, rs) in tables {
        let at: Vec<usize> = h
            .iter()
            .map(|c| match header.iter().position(|x| x == c) {
                Some(i) => i,
                None => {
                    header.push(c.clone());
                    header.len() - 1
                }
            })
            .collect();
        for r in rs {
            let mut row = vec![String::new(); header.len()];
            row[0] = value.clone();
            for (v, &i) in r.into_iter().zip(&at) {
                row[i] = v;
            }
            rows.push(row);
        }
    }
    for r in &mut rows {
        r.resize(header.len(), String::new());
    }
    (header, rows)
}

/// Writes `wells.parquet` and `summary.parquet` beside their CSV files in `out` (those
/// present), and `objects.parquet`: every table of `objects_tables` one after the other, under
/// the union of their columns (first-seen order), led by an `objects_table` column naming each
/// row's source file relative to `out` where it lies under it.
pub fn write_parquet_tables(out: &Path, objects_tables: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for name in ["wells", "summary"] {
        let csv = out.join(format!("{name}.csv"));
        if csv.is_file() {
            let dest = out.join(format!("{name}.parquet"));
            let (header, rows) = read_table(&csv)?;
            crate::io::parquet::write_table(&dest, &header, &rows)?;
            written.push(dest);
        }
    }
    if objects_tables.is_empty() {
        return Ok(written);
    }
    let parts = objects_tables
        .iter()
        .map(|t| {
            let (h, rs) = read_table(t)?;
            Ok((
                t.strip_prefix(out).unwrap_or(t).display().to_string(),
                h,
                rs,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let (header, rows) = concat_tables("objects_table", parts);
    let dest = out.join("objects.parquet");
    crate::io::parquet::write_table(&dest, &header, &rows)?;
    written.push(dest);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn values_resolve_with_or_without_units() {
        let h = s(&[
            "plate",
            "well",
            "objects_per_field",
            "area [px]_mean",
            "fraction_round",
        ]);
        assert_eq!(
            resolve_values(&h, &s(&["area_mean", "area [px]_mean"])).unwrap(),
            s(&["objects_per_field", "fraction_round", "area [px]_mean"])
        );
        let e = resolve_values(&h, &s(&["perimeter_mean"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"perimeter_mean\"") && e.contains("area_mean"),
            "{e}"
        );
        assert_eq!(
            without_unit("intensity_mean-0 [a.u.]_std"),
            "intensity_mean-0_std"
        );
    }
}
