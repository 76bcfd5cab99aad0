//! Per-well readouts of a screen run: `wells.csv` (one row per plate and well: fields, objects,
//! objects per field, and the mean, median and standard deviation of every object measurement)
//! and a plate heatmap per plate (`plate_<plate>_<value>.svg`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::batch::Outcome;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::measure::csv_field;
use crate::qc::report::parse_csv;
use crate::qc::{median, percentile};

/// Object-table columns that are not measurements (identity and position): not summarised.
const NOT_MEASURED: &[&str] = &["plate", "well", "row", "column", "site", "label", "t", "z"];

/// One well of a plate with its summaries.
#[derive(Debug, Clone)]
pub struct Well {
    /// Plate name.
    pub plate: String,
    /// Well name (`B03`).
    pub well: String,
    /// Row letters.
    pub row: String,
    /// Column number.
    pub column: u32,
    /// Fields analysed (status ok or skipped).
    pub fields: usize,
    /// The plate map's columns for the well (treatment, concentration, ...).
    pub annotations: BTreeMap<String, String>,
    /// Objects over the well's fields.
    pub objects: u64,
    /// `(measurement, mean, median, std)` over the well's objects (std with n − 1; NaN under
    /// two objects).
    pub stats: Vec<(String, f64, f64, f64)>,
}

/// The wells of a screen run, from its outcomes (their `_objects.csv` outputs, under `out`),
/// sorted by plate, row and column.
pub fn wells(out: &Path, outcomes: &[Outcome]) -> Result<Vec<Well>> {
    wells_of_runs(&[(out, outcomes)])
}

/// The wells of several runs together (each run: its output folder and outcomes), as if one
/// run had made every field: a well's fields may come from several runs.
pub fn wells_of_runs(runs: &[(&Path, &[Outcome])]) -> Result<Vec<Well>> {
    // (plate, row number, column) → fields, objects, measurement → values.
    type Acc = (
        String,
        usize,
        u64,
        BTreeMap<String, Vec<f64>>,
        BTreeMap<String, String>,
    );
    let mut acc: BTreeMap<(String, u32, u32), Acc> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let fields = runs.iter().flat_map(|(out, outcomes)| {
        outcomes
            .iter()
            .filter(|o| o.status == "ok" || o.status == "skipped")
            .map(move |o| (*out, o))
    });
    for (out, o) in fields {
        let (Some(plate), Some(well)) = (o.fields.get("plate"), o.fields.get("well")) else {
            continue;
        };
        let Some((row, col)) = super::parse_well(well) else {
            continue;
        };
        let e = acc.entry((plate.clone(), row, col)).or_insert_with(|| {
            let columns = super::table_columns([&o.fields]);
            let notes = columns[super::POSITION_COLUMNS.len()..]
                .iter()
                .filter_map(|c| Some((c.clone(), o.fields.get(c)?.clone())))
                .collect();
            (well.clone(), 0, 0, BTreeMap::new(), notes)
        });
        e.1 += 1;
        e.2 += o.objects;
        let Some(table) = o.outputs.keys().find(|k| k.ends_with("_objects.csv")) else {
            continue;
        };
        let path = out.join(table);
        let text = std::fs::read_to_string(&path).map_err(|err| Error::io(&path, err))?;
        let rows = parse_csv(&text);
        let Some(header) = rows.first() else { continue };
        for (c, name) in header.iter().enumerate() {
            let base = name.split(" [").next().unwrap_or(name);
            if NOT_MEASURED.contains(&base)
                || o.fields.contains_key(base)
                || base.starts_with("centroid")
                || base.starts_with("bbox")
            {
                continue;
            }
            if !order.contains(name) {
                order.push(name.clone());
            }
            let vals = e.3.entry(name.clone()).or_default();
            vals.extend(
                rows[1..]
                    .iter()
                    .filter_map(|r| r.get(c)?.parse::<f64>().ok()),
            );
        }
    }
    Ok(acc
        .into_iter()
        .map(
            |((plate, row, column), (well, fields, objects, mut m, annotations))| {
                let stats = order
                    .iter()
                    .map(|name| {
                        let v = m.remove(name).unwrap_or_default();
                        let n = v.len() as f64;
                        let mean = v.iter().sum::<f64>() / n;
                        let std = if v.len() > 1 {
                            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                        } else {
                            f64::NAN
                        };
                        let mut vv = v;
                        (name.clone(), mean, median(&mut vv), std)
                    })
                    .collect();
                Well {
                    plate,
                    well,
                    row: super::row_letters(row),
                    column,
                    fields,
                    annotations,
                    objects,
                    stats,
                }
            },
        )
        .collect())
}

/// `wells.csv`: plate, well, row, column, the plate map's columns, fields, objects,
/// objects_per_field, then
/// `<measurement>_mean`, `_median`, `_std` for every measurement (empty where undefined).
pub fn wells_csv(wells: &[Well]) -> String {
    let notes = super::table_columns(wells.iter().map(|w| &w.annotations));
    let notes = &notes[super::POSITION_COLUMNS.len()..];
    let mut s = String::from("plate,well,row,column");
    for n in notes {
        s += &format!(",{}", csv_field(n));
    }
    s += ",fields,objects,objects_per_field";
    if let Some(w) = wells.first() {
        for (name, ..) in &w.stats {
            for k in ["mean", "median", "std"] {
                s += &format!(",{}", csv_field(&format!("{name}_{k}")));
            }
        }
    }
    s.push('\n');
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v}")
        } else {
            String::new()
        }
    };
    for w in wells {
        s += &format!("{},{},{},{}", csv_field(&w.plate), w.well, w.row, w.column);
        for n in notes {
            s += &format!(
                ",{}",
                csv_field(w.annotations.get(n).map(String::as_str).unwrap_or(""))
            );
        }
        s += &format!(
            ",{},{},{}",
            w.fields,
            w.objects,
            num(w.objects as f64 / w.fields.max(1) as f64)
        );
        for (_, mean, med, std) in &w.stats {
            s += &format!(",{},{},{}", num(*mean), num(*med), num(*std));
        }
        s.push('\n');
    }
    s
}

/// Viridis at `t` in 0..1 (five stops, linear between them).
fn viridis(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// A plate heatmap of one per-well value (SVG): wells as squares coloured on a viridis scale
/// between the 2nd and 98th percentile of the plate's values (the extremes saturate), wells
/// without a value grey, rows and columns labelled, the value of each well in its tooltip. The
/// grid is the smallest standard plate (96, 384, 1536 wells) that holds every well.
pub fn heatmap_svg(plate: &str, title: &str, values: &[(u32, u32, f64)]) -> String {
    let max_r = values.iter().map(|v| v.0).max().unwrap_or(1);
    let max_c = values.iter().map(|v| v.1).max().unwrap_or(1);
    let (rows, cols) = [(8, 12), (16, 24), (32, 48)]
        .into_iter()
        .find(|&(r, c)| max_r <= r && max_c <= c)
        .unwrap_or((max_r, max_c));
    let cell = if cols > 24 {
        14.0
    } else if cols > 12 {
        24.0
    } else {
        40.0
    };
    let (left, top) = (36.0, 56.0);
    let width = left + cell * cols as f64 + 130.0;
    let height = top + cell * rows as f64 + 30.0;
    let mut finite: Vec<f64> = values
        .iter()
        .map(|v| v.2)
        .filter(|v| v.is_finite())
        .collect();
    let lo = percentile(&mut finite, 2.0);
    let hi = percentile(&mut finite, 98.0);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let esc = crate::report_util::esc;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{left}\" y=\"22\" font-size=\"15\" font-weight=\"600\">{}</text>\
         <text x=\"{left}\" y=\"40\" font-size=\"12\" fill=\"#555\">plate {}</text>",
        esc(title),
        esc(plate)
    );
    let by_pos: BTreeMap<(u32, u32), f64> = values.iter().map(|v| ((v.0, v.1), v.2)).collect();
    for c in 1..=cols {
        if cols <= 24 || c % 4 == 1 {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{c}</text>",
                left + cell * (c as f64 - 0.5),
                top - 4.0
            );
        }
    }
    for r in 1..=rows {
        let y = top + cell * (r - 1) as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            y + cell * 0.65,
            super::row_letters(r)
        );
        for c in 1..=cols {
            let x = left + cell * (c - 1) as f64;
            let well = format!("{}{c:02}", super::row_letters(r));
            let (fill, tip) = match by_pos.get(&(r, c)) {
                Some(v) if v.is_finite() => (viridis((v - lo) / span), format!("{well}: {v}")),
                _ => ("#dddddd".to_string(), format!("{well}: no value")),
            };
            let _ = write!(
                s,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" stroke=\"white\"><title>{}</title></rect>",
                cell - 1.0,
                cell - 1.0,
                esc(&tip)
            );
        }
    }
    // Colour bar.
    let bx = left + cell * cols as f64 + 24.0;
    let bh = cell * rows as f64;
    for k in 0..50 {
        let t = 1.0 - k as f64 / 49.0;
        let _ = write!(
            s,
            "<rect x=\"{bx}\" y=\"{}\" width=\"16\" height=\"{}\" fill=\"{}\"/>",
            top + bh * k as f64 / 50.0,
            bh / 50.0 + 0.5,
            viridis(t)
        );
    }
    let fmt = |v: f64| {
        if v.is_finite() {
            format!("{v:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            "–".into()
        }
    };
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
        bx + 20.0,
        top + 10.0,
        fmt(hi),
        bx + 20.0,
        top + bh,
        fmt(lo)
    );
    s += "</svg>\n";
    s
}

/// Writes `wells.csv` into `out` from the run's outcomes; returns it, or nothing for a run
/// without screen fields. The heatmaps, dose-response fits and Parquet tables are drawn from
/// it afterwards by [`super::readouts::write_readouts`].
pub fn write_wells_csv(out: &Path, outcomes: &[Outcome]) -> Result<Option<PathBuf>> {
    let ws = wells(out, outcomes)?;
    if ws.is_empty() {
        return Ok(None);
    }
    let csv = out.join("wells.csv");
    write_text(&csv, &wells_csv(&ws))?;
    Ok(Some(csv))
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, true, |w| {
        std::io::Write::write_all(w, text.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_sums_and_stats_from_object_tables() {
        let dir = std::env::temp_dir().join(format!("cytoseg-wells-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("P")).unwrap();
        let mut outcomes = Vec::new();
        for (site, areas) in [("1", vec![10.0, 20.0]), ("2", vec![30.0])] {
            let name = format!("P/A01_s{site}_objects.csv");
            let mut t =
                String::from("plate,well,row,column,site,label,area,centroid-0,intensity_mean-0\n");
            for (k, a) in areas.iter().enumerate() {
                t += &format!("P,A01,A,1,{site},{},{a},5,{}\n", k + 1, a * 2.0);
            }
            std::fs::write(dir.join(&name), t).unwrap();
            let mut o = Outcome {
                status: "ok".into(),
                objects: areas.len() as u64,
                ..Default::default()
            };
            o.fields =
                BTreeMap::from([("plate".into(), "P".into()), ("well".into(), "A01".into())]);
            o.outputs.insert(name, String::new());
            outcomes.push(o);
        }
        let ws = wells(&dir, &outcomes).unwrap();
        assert_eq!(ws.len(), 1);
        let w = &ws[0];
        assert_eq!(
            (w.fields, w.objects, w.row.as_str(), w.column),
            (2, 3, "A", 1)
        );
        let names: Vec<&str> = w.stats.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["area", "intensity_mean-0"]);
        let (_, mean, med, std) = w.stats[0];
        assert_eq!((mean, med), (20.0, 20.0));
        assert!((std - 10.0).abs() < 1e-12);
        let csv = wells_csv(&ws);
        assert!(csv.starts_with(
            "plate,well,row,column,fields,objects,objects_per_field,area_mean,area_median,area_std,"
        ));
        assert!(
            csv.contains("\nP,A01,A,1,2,3,1.5,20,20,10,40,40,20\n"),
            "{csv}"
        );
        let csv_path = write_wells_csv(&dir, &outcomes).unwrap().unwrap();
        let readouts = super::super::readouts::Readouts {
            values: vec!["area_mean".into()],
            parquet: false,
        };
        let files = super::super::readouts::write_readouts(&dir, &[], &readouts).unwrap();
        assert_eq!(
            files,
            [
                dir.join("plate_P_objects_per_field.svg"),
                dir.join("plate_P_area_mean.svg")
            ]
        );
        assert!(std::fs::read_to_string(&csv_path).unwrap() == csv);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            svg.contains("A01: 1.5") && svg.contains("H12: no value"),
            "96-well grid"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
