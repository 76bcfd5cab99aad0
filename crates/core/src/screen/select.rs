//! Fanning a screen out: one run per plate, well or field list. A workflow manager (Nextflow,
//! Snakemake, a cluster array job, Dask) lists the screen's fields ([`fields_csv`], `cytoseg
//! segment --layout auto --list-fields`), splits the list as it likes, and starts one run per
//! part with a [`Selection`] (`--plate`, `--well`, `--fields`), each into its own output folder
//! (resumable on its own); `cytoseg merge` then joins the runs' readouts
//! ([`super::merge`]).

use std::path::Path;

use super::platemap::normalise_well;
use crate::batch::Input;
use crate::error::{Error, Result};
use crate::measure::csv_field;

/// Which fields of a screen a run processes; empty lists select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Plates (exact names).
    pub plates: Vec<String>,
    /// Wells (`B3` and `b03` both mean `B03`).
    pub wells: Vec<String>,
    /// Fields as `(plate, well, site)`, e.g. from a field list ([`read_field_list`]); an empty
    /// plate or site matches any.
    pub fields: Vec<(String, String, String)>,
}

impl Selection {
    /// Whether nothing is filtered out.
    pub fn is_all(&self) -> bool {
        self.plates.is_empty() && self.wells.is_empty() && self.fields.is_empty()
    }

    fn keeps(&self, i: &Input) -> bool {
        let f = |k: &str| i.fields.get(k).map(String::as_str).unwrap_or("");
        let (plate, well, site) = (f("plate"), f("well"), f("site"));
        (self.plates.is_empty() || self.plates.iter().any(|p| p == plate))
            && (self.wells.is_empty() || self.wells.iter().any(|w| normalise_well(w) == well))
            && (self.fields.is_empty()
                || self.fields.iter().any(|(p, w, s)| {
                    (p.is_empty() || p == plate)
                        && normalise_well(w) == well
                        && (s.is_empty() || s == site)
                }))
    }

    /// The selected fields of `inputs` (the fields of [`super::expand_screen`]). An error names
    /// every requested plate, well or listed field the screen does not have (a typo must not
    /// quietly shrink a run), and a selection that keeps nothing.
    pub fn apply(&self, inputs: Vec<Input>) -> Result<Vec<Input>> {
        if self.is_all() {
            return Ok(inputs);
        }
        let has = |pred: &dyn Fn(&Input) -> bool| inputs.iter().any(pred);
        let f = |i: &Input, k: &str| i.fields.get(k).cloned().unwrap_or_default();
        let mut missing = Vec::new();
        for p in &self.plates {
            if !has(&|i| f(i, "plate") == *p) {
                missing.push(format!("plate {p:?}"));
            }
        }
        for w in &self.wells {
            if !has(&|i| f(i, "well") == normalise_well(w)) {
                missing.push(format!("well {w}"));
            }
        }
        for (p, w, s) in &self.fields {
            let one = Selection {
                fields: vec![(p.clone(), w.clone(), s.clone())],
                ..Default::default()
            };
            if !has(&|i| one.keeps(i)) {
                missing.push(format!("field plate {p:?} well {w} site {s:?}"));
            }
        }
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "the screen has no {} (see --list-fields)",
                missing.join(", no ")
            )));
        }
        let kept: Vec<Input> = inputs.into_iter().filter(|i| self.keeps(i)).collect();
        if kept.is_empty() {
            return Err(Error::invalid(
                "no field of the screen is in the selection (plates, wells and fields together); see --list-fields",
            ));
        }
        Ok(kept)
    }
}

/// The fields of a screen as CSV: `plate,well,site,files` (the channel files, space-separated),
/// one line per field; a part of it (header kept) is a field list for [`read_field_list`].
pub fn fields_csv(inputs: &[Input]) -> String {
    let mut s = String::from("plate,well,site,files\n");
    for i in inputs {
        let f = |k: &str| csv_field(i.fields.get(k).map(String::as_str).unwrap_or(""));
        let files: Vec<String> = i.channels.iter().map(|c| c.display().to_string()).collect();
        s += &format!(
            "{},{},{},{}\n",
            f("plate"),
            f("well"),
            f("site"),
            csv_field(&files.join(" "))
        );
    }
    s
}

/// Reads a field list: CSV with a `well` column and optionally `plate` and `site` (others, such
/// as `files`, are ignored), e.g. lines of [`fields_csv`]'s output. Errors name the file and
/// line.
pub fn read_field_list(path: &Path) -> Result<Vec<(String, String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = crate::qc::report::parse_csv(&text);
    rows.retain(|r| !(r.len() == 1 && r[0].trim().is_empty()));
    if rows.is_empty() {
        return Err(Error::format(path, "empty field list"));
    }
    let header: Vec<String> = rows
        .remove(0)
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    let col = |n: &str| header.iter().position(|h| h == n);
    let Some(wc) = col("well") else {
        return Err(Error::format(
            path,
            "no well column (a field list has columns plate,well,site; see --list-fields)",
        ));
    };
    let (pc, sc) = (col("plate"), col("site"));
    let mut out = Vec::with_capacity(rows.len());
    for (n, r) in rows.iter().enumerate() {
        let get = |c: Option<usize>| c.and_then(|c| r.get(c)).map(|v| v.trim().to_string());
        let well = get(Some(wc)).unwrap_or_default();
        if super::parse_well(&normalise_well(&well)).is_none() {
            return Err(Error::format(
                path,
                format!("line {}: {well:?} is not a well (B03)", n + 2),
            ));
        }
        out.push((
            get(pc).unwrap_or_default(),
            well,
            get(sc).unwrap_or_default(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn field(plate: &str, well: &str, site: &str) -> Input {
        Input {
            path: PathBuf::from(format!("{plate}_{well}_s{site}_w1.tif")),
            stem: PathBuf::from(format!("{plate}/{well}_s{site}")),
            channels: vec![PathBuf::from(format!("{plate}_{well}_s{site}_w1.tif"))],
            fields: BTreeMap::from([
                ("plate".to_string(), plate.to_string()),
                ("well".to_string(), well.to_string()),
                ("site".to_string(), site.to_string()),
            ]),
        }
    }

    fn screen() -> Vec<Input> {
        let mut v = Vec::new();
        for p in ["P1", "P2"] {
            for w in ["A01", "B03"] {
                for s in ["1", "2"] {
                    v.push(field(p, w, s));
                }
            }
        }
        v
    }

    fn names(v: &[Input]) -> Vec<String> {
        v.iter().map(|i| i.stem.display().to_string()).collect()
    }

    #[test]
    fn plates_wells_and_lists_select_fields() {
        assert_eq!(Selection::default().apply(screen()).unwrap().len(), 8);
        let s = Selection {
            plates: vec!["P2".into()],
            wells: vec!["b3".into()],
            ..Default::default()
        };
        assert_eq!(
            names(&s.apply(screen()).unwrap()),
            ["P2/B03_s1", "P2/B03_s2"]
        );
        let s = Selection {
            fields: vec![
                ("P1".into(), "A1".into(), "2".into()),
                (String::new(), "B03".into(), "1".into()),
            ],
            ..Default::default()
        };
        assert_eq!(
            names(&s.apply(screen()).unwrap()),
            ["P1/A01_s2", "P1/B03_s1", "P2/B03_s1"]
        );
        let e = Selection {
            plates: vec!["P9".into()],
            wells: vec!["C05".into()],
            ..Default::default()
        }
        .apply(screen())
        .unwrap_err()
        .to_string();
        assert!(e.contains("no plate \"P9\", no well C05"), "{e}");
        let e = Selection {
            plates: vec!["P1".into()],
            fields: vec![("P2".into(), "A01".into(), "1".into())],
            ..Default::default()
        }
        .apply(screen())
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no field of the screen is in the selection"),
            "{e}"
        );
    }

    #[test]
    fn field_lists_round_trip_and_bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("cytoseg-select-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("fields.csv");
        let all = fields_csv(&screen());
        let part: String = all.lines().take(3).map(|l| format!("{l}\n")).collect();
        std::fs::write(&list, part).unwrap();
        let fields = read_field_list(&list).unwrap();
        assert_eq!(
            fields,
            [
                ("P1".to_string(), "A01".to_string(), "1".to_string()),
                ("P1".to_string(), "A01".to_string(), "2".to_string())
            ]
        );
        let s = Selection {
            fields,
            ..Default::default()
        };
        assert_eq!(
            names(&s.apply(screen()).unwrap()),
            ["P1/A01_s1", "P1/A01_s2"]
        );
        std::fs::write(&list, "plate,well\nP1,A01\nP1,Z\n").unwrap();
        let e = read_field_list(&list).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("\"Z\""), "{e}");
        std::fs::write(&list, "plate,site\nP1,1\n").unwrap();
        assert!(
            read_field_list(&list)
                .unwrap_err()
                .to_string()
                .contains("no well column")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
