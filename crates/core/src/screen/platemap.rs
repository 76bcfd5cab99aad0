//! Plate maps: what was put in each well. A CSV with a `well` column (`B3`, `B03`, `b003`
//! alike), optionally `plate` (for maps covering several plates; a row without a plate applies
//! to every plate), and any other columns; `treatment`, `concentration` and `control`
//! (1/true/yes/y) have meaning for the readouts (dose-response, controls, confounding). Every
//! other column is carried into the tables as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::qc::report::parse_csv;

/// A plate map read from a CSV file.
#[derive(Debug, Clone)]
pub struct PlateMap {
    path: PathBuf,
    /// The carried columns, in file order (without `well` and `plate`), lower-cased names.
    pub columns: Vec<String>,
    /// (plate or "", normalised well) → values in `columns` order.
    rows: BTreeMap<(String, String), Vec<String>>,
}

/// `B3`, `b03`, `B003` → `B03` (row letters upper-cased, column with at least two digits); other
/// text upper-cased as it is.
pub fn normalise_well(w: &str) -> String {
    let w = w.trim();
    let letters: String = w.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    match w[letters.len()..].parse::<u32>() {
        Ok(n) if !letters.is_empty() => format!("{}{n:02}", letters.to_uppercase()),
        _ => w.to_uppercase(),
    }
}

/// Whether a plate map's `control` cell says yes.
pub fn is_control(v: &str) -> bool {
    matches!(v.trim().to_lowercase().as_str(), "1" | "true" | "yes" | "y")
}

impl PlateMap {
    /// Reads a plate map; errors name the file and what is wrong (no `well` column, a well
    /// given twice for the same plate).
    pub fn read(path: &Path) -> Result<PlateMap> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let rows = parse_csv(&text);
        let header: Vec<String> = rows
            .first()
            .map(|h| h.iter().map(|s| s.trim().to_lowercase()).collect())
            .unwrap_or_default();
        let Some(wc) = header.iter().position(|h| h == "well") else {
            return Err(Error::invalid(format!(
                "plate map {}: needs a well column (found: {})",
                path.display(),
                header.join(", ")
            )));
        };
        let pc = header.iter().position(|h| h == "plate");
        let carried: Vec<usize> = (0..header.len())
            .filter(|&i| i != wc && Some(i) != pc)
            .collect();
        let mut map = BTreeMap::new();
        for (n, r) in rows.iter().enumerate().skip(1) {
            let Some(well) = r.get(wc).map(|w| w.trim()).filter(|w| !w.is_empty()) else {
                continue;
            };
            let plate = pc
                .and_then(|c| r.get(c))
                .map(|p| p.trim().to_string())
                .unwrap_or_default();
            let values = carried
                .iter()
                .map(|&i| r.get(i).map(|v| v.trim().to_string()).unwrap_or_default())
                .collect();
            let key = (plate, normalise_well(well));
            if map.insert(key.clone(), values).is_some() {
                return Err(Error::invalid(format!(
                    "plate map {}: well {} is given twice{} (line {})",
                    path.display(),
                    key.1,
                    if key.0.is_empty() {
                        String::new()
                    } else {
                        format!(" for plate {}", key.0)
                    },
                    n + 1
                )));
            }
        }
        Ok(PlateMap {
            path: path.to_path_buf(),
            columns: carried.iter().map(|&i| header[i].clone()).collect(),
            rows: map,
        })
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The carried values of a well (the plate's own row first, else the row without a plate),
    /// by column name; `None` when the map does not list the well.
    pub fn well(&self, plate: &str, well: &str) -> Option<BTreeMap<String, String>> {
        let w = normalise_well(well);
        let vals = self
            .rows
            .get(&(plate.to_string(), w.clone()))
            .or_else(|| self.rows.get(&(String::new(), w)))?;
        Some(
            self.columns
                .iter()
                .cloned()
                .zip(vals.iter().cloned())
                .collect(),
        )
    }

    /// A well's treatment as the readouts name it: the `treatment` value, or
    /// `control (<treatment>)` for a control well; `None` when the map has no treatment column
    /// or does not list the well.
    pub fn treatment(&self, plate: &str, well: &str) -> Option<String> {
        let v = self.well(plate, well)?;
        let t = v.get("treatment")?.clone();
        Some(if v.get("control").is_some_and(|c| is_control(c)) {
            format!("control ({t})")
        } else {
            t
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wells_plates_and_controls() {
        let dir = std::env::temp_dir().join(format!("cytoseg-pmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("map.csv");
        std::fs::write(&p, "Well,Treatment,Concentration,Control,plate\nA1,DMSO,0,1,\nb3,drug,1.5,,\nB3,drug,3,,P2\n").unwrap();
        let m = PlateMap::read(&p).unwrap();
        assert_eq!(m.columns, ["treatment", "concentration", "control"]);
        assert_eq!(m.treatment("P1", "A01").unwrap(), "control (DMSO)");
        assert_eq!(m.well("P1", "B03").unwrap()["concentration"], "1.5");
        assert_eq!(m.well("P2", "b3").unwrap()["concentration"], "3");
        assert!(m.well("P1", "C01").is_none());
        std::fs::write(&p, "well,treatment\nA1,x\nA01,y\n").unwrap();
        let e = PlateMap::read(&p).unwrap_err().to_string();
        assert!(
            e.contains("A01 is given twice") && e.contains("line 3"),
            "{e}"
        );
        std::fs::write(&p, "position,treatment\n").unwrap();
        assert!(
            PlateMap::read(&p)
                .unwrap_err()
                .to_string()
                .contains("needs a well column")
        );
        assert_eq!(normalise_well("A012"), "A12");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
