//! Per-well class fractions: after a classifier has labelled every object (see
//! [`crate::classify`]), `wells.csv` gains a `fraction_<class>` column per class (objects of the
//! class over the well's classified objects). Kept apart from [`super::wells`], which writes
//! `wells.csv`; this only rewrites it, replacing earlier fraction columns (re-runnable) and
//! dropping the `class_*` summaries (those of the text column `class` are empty; the fractions
//! replace those of `class_probability`; the `probability_<class>_*` summaries stay).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::measure::csv_field;
use crate::qc::report::parse_csv;

/// Adds `fraction_<class>` columns (in `classes` order) to `OUT/wells.csv`, counting the `class`
/// column of every objects table under `out` by plate and well. Returns the file when it
/// exists (nothing is done otherwise).
pub fn write_class_fractions(out: &Path, classes: &[String]) -> Result<Option<PathBuf>> {
    let path = out.join("wells.csv");
    if !path.is_file() {
        return Ok(None);
    }
    let tables: Vec<PathBuf> = crate::classify::table_stems(out)?
        .iter()
        .map(|stem| out.join(format!("{stem}{}", crate::classify::OBJECTS_SUFFIX)))
        .collect();
    add_class_fractions(&path, &tables, classes)?;
    Ok(Some(path))
}

/// The classes of a classified objects table, from its `probability_<class>` columns (in
/// their order); empty for a table no classifier has been applied to.
pub fn table_classes(table: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(table).map_err(|e| Error::io(table, e))?;
    let header = parse_csv(text.lines().next().unwrap_or(""));
    Ok(header
        .first()
        .map(|h| {
            h.iter()
                .filter_map(|c| c.strip_prefix("probability_"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// Rewrites the wells table `path` with a `fraction_<class>` column per class, counting the
/// `class` column of the objects tables `tables` by plate and well (the fractions of several
/// runs' tables together when merging runs).
pub fn add_class_fractions(path: &Path, tables: &[PathBuf], classes: &[String]) -> Result<()> {
    // (plate, well) → count per class.
    let mut counts: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for t in tables {
        let rows = parse_csv(&std::fs::read_to_string(t).map_err(|e| Error::io(t, e))?);
        let Some(h) = rows.first() else { continue };
        let col = |n: &str| h.iter().position(|x| x == n);
        let (Some(p), Some(w), Some(c)) = (col("plate"), col("well"), col("class")) else {
            continue;
        };
        for r in &rows[1..] {
            let (Some(plate), Some(well), Some(class)) = (r.get(p), r.get(w), r.get(c)) else {
                continue;
            };
            if let Some(k) = classes.iter().position(|x| x == class) {
                counts
                    .entry((plate.clone(), well.clone()))
                    .or_insert_with(|| vec![0; classes.len()])[k] += 1;
            }
        }
    }
    let rows = parse_csv(&std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
    let Some(header) = rows.first() else {
        return Ok(());
    };
    let drop = |n: &str| n.starts_with("fraction_") || n.starts_with("class_");
    let keep: Vec<usize> = (0..header.len()).filter(|&i| !drop(&header[i])).collect();
    let (Some(p), Some(w)) = (
        header.iter().position(|x| x == "plate"),
        header.iter().position(|x| x == "well"),
    ) else {
        return Err(Error::format(path, "no plate and well columns"));
    };
    let line = |f: Vec<String>| f.iter().map(|x| csv_field(x)).collect::<Vec<_>>().join(",");
    let mut text = line(
        keep.iter()
            .map(|&i| header[i].clone())
            .chain(classes.iter().map(|c| format!("fraction_{c}")))
            .collect(),
    );
    text.push('\n');
    for r in rows[1..].iter().filter(|r| r.len() > 1) {
        let key = (
            r.get(p).cloned().unwrap_or_default(),
            r.get(w).cloned().unwrap_or_default(),
        );
        let n = counts.get(&key);
        let total: u64 = n.map_or(0, |v| v.iter().sum());
        let fractions = (0..classes.len()).map(|k| match n {
            Some(v) if total > 0 => format!("{}", v[k] as f64 / total as f64),
            _ => String::new(),
        });
        text += &line(
            keep.iter()
                .map(|&i| r.get(i).cloned().unwrap_or_default())
                .chain(fractions)
                .collect(),
        );
        text.push('\n');
    }
    crate::io::write_atomic(path, true, |f| {
        std::io::Write::write_all(f, text.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_per_well_replace_earlier_ones() {
        let dir = std::env::temp_dir().join(format!("cytoseg-classes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let classes = vec!["a".to_string(), "b".to_string()];
        assert_eq!(write_class_fractions(&dir, &classes).unwrap(), None);
        std::fs::write(
            dir.join("A01_s1_objects.csv"),
            "plate,well,label,area,class\nP,A01,1,5,a\nP,A01,2,6,b\nP,A01,3,7,b\nP,A01,4,7,\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("B02_s1_objects.csv"),
            "plate,well,label,area,class\nP,B02,1,5,a\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("wells.csv"),
            "plate,well,objects,area_mean,class_mean\nP,A01,4,6.25,\nP,B02,1,5,\nP,C03,0,,\n",
        )
        .unwrap();
        for _ in 0..2 {
            write_class_fractions(&dir, &classes).unwrap();
            let text = std::fs::read_to_string(dir.join("wells.csv")).unwrap();
            assert_eq!(
                text,
                "plate,well,objects,area_mean,fraction_a,fraction_b\n\
                 P,A01,4,6.25,0.3333333333333333,0.6666666666666666\n\
                 P,B02,1,5,1,0\n\
                 P,C03,0,,,\n"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
