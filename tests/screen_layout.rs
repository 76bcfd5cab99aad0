//! Screens: a synthetic plate built from real DSB2018 images, named in both vendor schemes
//! (ImageXpress and Opera/Operetta) with two channels per field, segmented with
//! `cytoseg segment --layout`: every field's object count equals that of its nuclear channel
//! segmented alone, the tables carry plate/well/site, intensities are measured on both
//! channels; bad layouts (missing channel, duplicate field, unparsable names) fail with errors
//! naming the files. Needs the shared data and ONNX Runtime (skips, saying so, without either).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cytoseg::core::qc::report::parse_csv;

fn cytoseg(args: &[&str]) -> Option<Command> {
    let lib = common::ort_library()?;
    let mut c = Command::new(common::cytoseg_exe());
    c.args(args)
        .arg("--device")
        .arg("cpu")
        .arg("--ort-lib")
        .arg(lib);
    Some(c)
}

fn run(mut c: Command) -> Output {
    let o = c.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// The shared data folder, when it and ONNX Runtime are present (says why it skips otherwise).
fn prerequisites() -> Option<PathBuf> {
    let Some(data) = common::shared_data() else {
        eprintln!("SKIPPED: ../shared/data/dsb2018-fluo absent");
        return None;
    };
    if common::ort_library().is_none() {
        eprintln!("SKIPPED: no ONNX Runtime library");
        return None;
    }
    Some(data)
}

/// summary.csv rows as maps of column → value.
fn table(path: &Path) -> Vec<BTreeMap<String, String>> {
    let rows = parse_csv(&std::fs::read_to_string(path).unwrap());
    rows[1..]
        .iter()
        .map(|r| rows[0].iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

/// The sample images, each with a second channel (the image halved).
fn samples(data: &Path) -> Vec<(PathBuf, Vec<u8>, u32, u32)> {
    let mut v = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("sample/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files.into_iter().take(4) {
        let img = cytoseg::core::io::image::read_image(&f).unwrap();
        let (w, h) = (img.width as u32, img.height as u32);
        let cytoseg::core::image::ImageData::U8(px) = img.data else {
            panic!("{}: the sample images are 8-bit", f.display());
        };
        v.push((f, px, w, h));
    }
    v
}

fn save(path: &Path, px: &[u8], w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_raw(w, h, px.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

#[test]
fn vendor_layouts_give_fields_with_the_counts_of_their_nuclear_channel() {
    let Some(data) = prerequisites() else { return };
    let dir = common::temp_dir("screen");
    let s = samples(&data);
    let wells = ["B02", "B03"];
    // Reference: the nuclear channel alone.
    for (k, (_, px, w, h)) in s.iter().enumerate() {
        save(&dir.join(format!("alone/img{k}.png")), px, *w, *h);
    }
    let ref_out = dir.join("alone-out");
    assert!(
        run(cytoseg(&[
            "segment",
            dir.join("alone").to_str().unwrap(),
            "--out",
            ref_out.to_str().unwrap(),
            "-q"
        ])
        .unwrap())
        .status
        .success()
    );
    let alone: Vec<String> = table(&ref_out.join("summary.csv"))
        .into_iter()
        .map(|r| r["objects"].clone())
        .collect();
    for (scheme, layout) in [("ixm", "imagexpress"), ("operetta", "auto")] {
        let plate = dir.join(scheme).join("Plate7");
        for (k, (_, px, w, h)) in s.iter().enumerate() {
            let (well, site) = (wells[k / 2], k % 2 + 1);
            let half: Vec<u8> = px.iter().map(|v| v / 2).collect();
            for (ch, img) in [(1, px), (2, &half)] {
                let name = if scheme == "ixm" {
                    format!("Plate7_{well}_s{site}_w{ch}.png")
                } else {
                    format!(
                        "r02c{:02}f{site:02}p01-ch{ch}sk1fk1fl1.png",
                        &well[1..].parse::<u32>().unwrap()
                    )
                };
                save(&plate.join(name), img, *w, *h);
            }
        }
        let out = dir.join(format!("{scheme}-out"));
        let map = dir.join("map.csv");
        std::fs::write(
            &map,
            "well,treatment,concentration,control\nB2,DMSO,0,1\nB3,drug,10,\n",
        )
        .unwrap();
        let o = run(cytoseg(&[
            "segment",
            plate.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--layout",
            layout,
            "--plate-map",
            map.to_str().unwrap(),
        ])
        .unwrap());
        assert!(o.status.success());
        let rows = table(&out.join("summary.csv"));
        assert_eq!(rows.len(), 4);
        for (k, r) in rows.iter().enumerate() {
            assert_eq!(r["plate"], "Plate7");
            assert_eq!(
                (r["well"].as_str(), r["site"].as_str()),
                (wells[k / 2], ["1", "2"][k % 2])
            );
            assert_eq!(
                r["objects"], alone[k],
                "{scheme} field {k}: the nuclear channel alone gives {}",
                alone[k]
            );
            let objects = out
                .join("Plate7")
                .join(format!("{}_s{}_objects.csv", r["well"], r["site"]));
            let t = table(&objects);
            assert_eq!(t.len().to_string(), r["objects"]);
            if let Some(first) = t.first() {
                assert_eq!(first["well"], r["well"]);
                assert_eq!(first["treatment"], r["treatment"]);
                let (a, b): (f64, f64) = (
                    first["intensity_mean-0"].parse().unwrap(),
                    first["intensity_mean-1"].parse().unwrap(),
                );
                // Channel 2 is channel 1 halved, rounded down pixel by pixel.
                assert!(
                    (0.0..=0.5).contains(&(a / 2.0 - b)),
                    "channel 2 is channel 1 halved: {a} {b}"
                );
            }
        }
        // Per well: the fields' counts add up, and the plate heatmap is drawn.
        let per_well = table(&out.join("wells.csv"));
        assert_eq!(per_well.len(), 2);
        for w in &per_well {
            let sum: u64 = rows
                .iter()
                .filter(|r| r["well"] == w["well"])
                .map(|r| r["objects"].parse::<u64>().unwrap())
                .sum();
            assert_eq!(w["objects"], sum.to_string(), "{}", w["well"]);
            let treatment = if w["well"] == "B02" { "DMSO" } else { "drug" };
            assert_eq!(w["treatment"], treatment, "the plate map is joined");
            assert!(
                !w.contains_key("concentration_mean") && w.contains_key("area_mean"),
                "plate-map columns are annotations, not measurements"
            );
            assert_eq!(w["fields"], "2");
        }
        // One concentration of the drug: listed, too few to fit (4 parameters).
        let dose = table(&out.join("dose_response.csv"));
        assert_eq!(dose.len(), 1);
        assert_eq!(
            (
                dose[0]["treatment"].as_str(),
                dose[0]["concentrations"].as_str(),
                dose[0]["ec50"].as_str()
            ),
            ("drug", "1", "")
        );
        let svg = std::fs::read_to_string(out.join("plate_Plate7_objects_per_field.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("B02: ") && svg.contains("H12: no value"));
    }

    // Bad layouts: errors name the files.
    let bad = dir.join("bad");
    let (_, px, w, h) = &s[0];
    for name in ["P_A01_s1_w1.png", "P_A01_s1_w2.png", "P_A02_s1_w1.png"] {
        save(&bad.join(name), px, *w, *h);
    }
    let bad_out = dir.join("bad-out");
    // The run fails; returns what it said.
    let refused = |layout: &str| {
        let o = run(cytoseg(&[
            "segment",
            bad.to_str().unwrap(),
            "--out",
            bad_out.to_str().unwrap(),
            "--layout",
            layout,
        ])
        .unwrap());
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = refused("auto");
    assert!(
        err.contains("P_A02_s1_w1.png") && err.contains("lacks channel(s) 2"),
        "{err}"
    );
    save(&bad.join("P_A02_s1_w2.png"), px, *w, *h);
    save(&bad.join("notes.png"), px, *w, *h);
    let err = refused("imagexpress");
    assert!(err.contains("notes.png"), "{err}");
    assert!(
        !dir.join("bad-out").exists(),
        "nothing is written when the layout is bad"
    );
}

/// The plate of [`samples`] in ImageXpress names, wells B02 and B03 with two sites each.
fn ixm_plate(dir: &Path, s: &[(PathBuf, Vec<u8>, u32, u32)]) -> PathBuf {
    let plate = dir.join("Plate7");
    for (k, (_, px, w, h)) in s.iter().enumerate() {
        let (well, site) = (["B02", "B03"][k / 2], k % 2 + 1);
        let half: Vec<u8> = px.iter().map(|v| v / 2).collect();
        for (ch, img) in [(1, px), (2, &half)] {
            save(
                &plate.join(format!("Plate7_{well}_s{site}_w{ch}.png")),
                img,
                *w,
                *h,
            );
        }
    }
    plate
}

/// Parquet rows as text (nulls as "").
fn parquet_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let names = r
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let rows = r
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(_, f)| match f {
                    Field::Null => String::new(),
                    Field::Double(v) => format!("{v}"),
                    Field::Str(v) => v.clone(),
                    other => panic!("unexpected Parquet field {other:?}"),
                })
                .collect()
        })
        .collect();
    (names, rows)
}

#[test]
fn a_screen_fanned_out_over_runs_merges_into_the_tables_of_one_run() {
    let Some(data) = prerequisites() else { return };
    let dir = common::temp_dir("screen-merge");
    let plate = ixm_plate(&dir, &samples(&data));
    let map = dir.join("map.csv");
    std::fs::write(
        &map,
        "well,treatment,concentration,control\nB2,DMSO,0,1\nB3,drug,10,\n",
    )
    .unwrap();
    let segment = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "segment",
            plate.to_str().unwrap(),
            "--layout",
            "auto",
            "--plate-map",
            map.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ];
        args.extend_from_slice(extra);
        run(cytoseg(&args).unwrap())
    };
    // The whole plate in one run.
    let whole = dir.join("whole");
    let o = segment(
        &whole,
        &["--value", "area_mean,intensity_mean-1_median", "--parquet"],
    );
    assert!(o.status.success());
    // The field list, split three ways: well B02, B03 site 1 (a list), B03 site 2 (a list):
    // well B03 is split between runs.
    let o = segment(&dir.join("unused"), &["--list-fields"]);
    assert!(o.status.success());
    let listed = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 5, "{listed}");
    assert!(lines[0].starts_with("plate,well,site,files"));
    assert!(lines[1].starts_with("Plate7,B02,1,") && lines[1].contains("Plate7_B02_s1_w2.png"));
    assert!(!dir.join("unused").exists(), "--list-fields writes nothing");
    let mut runs = Vec::new();
    for (name, sel) in [("b02", None), ("b03s1", Some(3)), ("b03s2", Some(4))] {
        let out = dir.join("runs").join(name);
        let o = match sel {
            None => segment(&out, &["--well", "b2"]),
            Some(line) => {
                let list = dir.join(format!("{name}.csv"));
                std::fs::write(&list, format!("{}\n{}\n", lines[0], lines[line])).unwrap();
                segment(&out, &["--fields", list.to_str().unwrap()])
            }
        };
        assert!(o.status.success());
        let n = table(&out.join("summary.csv")).len();
        assert_eq!(n, if sel.is_none() { 2 } else { 1 }, "{name}");
        runs.push(out);
    }
    let merged = dir.join("merged");
    let mut args = vec!["merge"];
    args.extend(runs.iter().map(|r| r.to_str().unwrap()));
    args.extend([
        "--out",
        merged.to_str().unwrap(),
        "--value",
        "area_mean,intensity_mean-1_median",
        "--parquet",
    ]);
    let o = run({
        let mut c = Command::new(common::cytoseg_exe());
        c.args(&args);
        c
    });
    assert!(o.status.success());
    // Same wells table, same pictures, same fits as the single run.
    for f in [
        "wells.csv",
        "dose_response.csv",
        "plate_Plate7_objects_per_field.svg",
        "plate_Plate7_area_mean.svg",
        "plate_Plate7_intensity_mean-1_median.svg",
        "dose_response_area_mean.svg",
    ] {
        let a = std::fs::read_to_string(whole.join(f)).unwrap();
        let b = std::fs::read_to_string(merged.join(f)).unwrap();
        assert_eq!(a, b, "{f}: the merged runs differ from the single run");
    }
    let summary = table(&merged.join("summary.csv"));
    assert_eq!(summary.len(), 4);
    assert!(summary[0]["run"].ends_with("b02") && summary[3]["run"].ends_with("b03s2"));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("merge.json")).unwrap()).unwrap();
    assert_eq!(record["runs"].as_array().unwrap().len(), 3);
    assert_eq!(record["fields"], 4);
    assert!(record["runs"][0]["model"]["sha256"].as_str().unwrap().len() == 64);
    // Parquet: the same rows as the CSV tables, numbers typed.
    for out in [&whole, &merged] {
        let wells_csv = parse_csv(&std::fs::read_to_string(out.join("wells.csv")).unwrap());
        let (names, rows) = parquet_rows(&out.join("wells.parquet"));
        assert_eq!(names, wells_csv[0]);
        assert_eq!(rows.len(), wells_csv.len() - 1);
        for (p, c) in rows.iter().zip(&wells_csv[1..]) {
            for (a, b) in p.iter().zip(c) {
                match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => assert_eq!(x, y),
                    _ => assert_eq!(a, b),
                }
            }
        }
        let (names, rows) = parquet_rows(&out.join("objects.parquet"));
        assert_eq!(names[..3], ["objects_table", "plate", "well"]);
        let objects: usize = summary
            .iter()
            .map(|r| r["objects"].parse::<usize>().unwrap())
            .sum();
        assert_eq!(rows.len(), objects);
        let (_, rows) = parquet_rows(&out.join("summary.parquet"));
        assert_eq!(rows.len(), 4);
    }
    // Refusals, each naming the problem; nothing written.
    let merge_err = |runs: &[&Path], out: &Path| {
        let mut c = Command::new(common::cytoseg_exe());
        c.arg("merge").args(runs).arg("--out").arg(out);
        let o = run(c);
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let nowhere = dir.join("nowhere");
    let e = merge_err(&[&runs[0], &whole], &nowhere);
    assert!(
        e.contains("plate Plate7 well B02 site 1 was segmented by two runs"),
        "{e}"
    );
    let e = merge_err(&[&runs[0], &runs[1]], &runs[1]);
    assert!(e.contains("is one of the runs"), "{e}");
    let e = merge_err(&[&runs[0], &plate], &nowhere);
    assert!(
        e.contains("not the output folder of a finished cytoseg segment run"),
        "{e}"
    );
    assert!(!nowhere.exists());
    let o = segment(&dir.join("typo"), &["--well", "C07"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("the screen has no well C07"));
    // A value name no table can have fails before anything runs; one this table lacks (a
    // third channel) when the readouts are drawn, listing what the table has.
    let o = segment(&dir.join("typo"), &["--value", "perimeter_median_typo"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        e.contains("\"perimeter_median_typo\" is not a per-well value"),
        "{e}"
    );
    assert!(!dir.join("typo").exists());
    let o = segment(&whole, &["--value", "intensity_mean-2_mean"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        e.contains("no per-well value \"intensity_mean-2_mean\""),
        "{e}"
    );
}
