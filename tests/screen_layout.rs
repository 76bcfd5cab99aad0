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
    let Some(data) = common::shared_data() else {
        eprintln!("SKIPPED: ../shared/data/dsb2018-fluo absent");
        return;
    };
    if common::ort_library().is_none() {
        eprintln!("SKIPPED: no ONNX Runtime library");
        return;
    }
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
