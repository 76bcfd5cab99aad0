//! The classifier trained in memory (napari, Fiji, the C API's image entry points) sees exactly
//! what it sees on a `cytoseg segment` output folder: two DSB2018 images segmented by the CLI,
//! then the same objects picked in memory (image buffers + label images) and in a labels CSV
//! over the folder. Features, validation, forest and predictions must be equal, both ways.
//! Needs the shared data and ONNX Runtime (skips, saying so, without either).

mod common;

use std::collections::BTreeMap;

use cytoseg::core::classify::{
    Classifier, LabelledImage, ObjectsTable, Pick, TrainOptions, apply_folder, classify_image,
    train, train_images,
};
use cytoseg::core::image::{ImageView, Pixels, Stack};
use cytoseg::core::io::labels::read_labels;
use cytoseg::core::measure::Calibration;
use cytoseg::core::qc::report::parse_csv;
use ndarray::Array2;
use ndarray_npy::NpzReader;

/// Bitwise equality of feature rows (NaN equal to NaN).
fn same(a: &[Vec<f64>], b: &[Vec<f64>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len() && x.iter().zip(y).all(|(u, v)| u.to_bits() == v.to_bits())
        })
}

#[test]
fn in_memory_training_and_classes_equal_the_folder_path() {
    let Some(data) = common::shared_data() else {
        println!("SKIPPED classify in memory: ../shared/data/dsb2018-fluo is absent");
        return;
    };
    let dir = common::temp_dir("classify-memory");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut npz = NpzReader::new(std::fs::File::open(data.join("train.npz")).unwrap()).unwrap();
    // stem → the image as a host would hold it: a u8 buffer.
    let mut pixels: BTreeMap<String, Array2<u8>> = BTreeMap::new();
    let mut k = 0;
    while pixels.len() < 2 {
        let img: Array2<u8> = npz.by_name(&format!("img_{k}")).unwrap();
        if img.dim() == (256, 256) {
            let stem = format!("img_{k:03}");
            image::GrayImage::from_raw(256, 256, img.iter().copied().collect())
                .unwrap()
                .save(images.join(format!("{stem}.png")))
                .unwrap();
            pixels.insert(stem, img);
        }
        k += 1;
    }
    let out = dir.join("out");
    let Some(c) = common::cytoseg(&[
        "segment",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]) else {
        return;
    };
    let o = common::run(c);
    assert!(o.status.success(), "cytoseg segment failed");

    // In memory: the pixels and the labels the run wrote, nothing else.
    let mut stacks = Vec::new();
    for (stem, img) in &pixels {
        let (labels, h, w) = read_labels(&out.join(format!("{stem}_labels.tif"))).unwrap();
        let buf: Vec<u8> = img.iter().copied().collect();
        let view = ImageView::packed(Pixels::U8(&buf), w, h, 1).unwrap();
        let stack = Stack::single(view.to_image(), Calibration::default());
        stacks.push((stem.clone(), stack, labels));
    }
    // Features: names and values equal to the folder's tables (bit for bit).
    for (stem, stack, labels) in &stacks {
        let mem = ObjectsTable::measure(stem, stack, labels).unwrap();
        let disk = ObjectsTable::load(&out, stem).unwrap();
        let names = disk.feature_names();
        assert_eq!(mem.feature_names(), names, "{stem}: feature names");
        assert!(names.iter().any(|n| n.starts_with("texture_")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("area")), "{names:?}");
        assert!(
            same(
                &mem.features(&names).unwrap(),
                &disk.features(&names).unwrap()
            ),
            "{stem}: feature values differ"
        );
    }
    // Picks: the 8 largest objects of each image "big", the 8 smallest "small".
    let mut picks: Vec<Vec<Pick>> = Vec::new();
    let mut csv = String::from("image,label,class\n");
    for (stem, _, labels) in &stacks {
        let mut area: BTreeMap<u32, usize> = BTreeMap::new();
        for &l in labels.iter().filter(|&&l| l != 0) {
            *area.entry(l).or_default() += 1;
        }
        let mut by_area: Vec<(usize, u32)> = area.iter().map(|(&l, &a)| (a, l)).collect();
        by_area.sort();
        assert!(by_area.len() >= 16, "{stem}: {} objects", by_area.len());
        let mut p = Vec::new();
        for (class, objs) in [
            ("small", &by_area[..8]),
            ("big", &by_area[by_area.len() - 8..]),
        ] {
            for &(_, label) in objs {
                p.push(Pick {
                    label,
                    class: class.into(),
                });
                csv += &format!("{stem},{label},{class}\n");
            }
        }
        picks.push(p);
    }
    let labels_csv = dir.join("labels.csv");
    std::fs::write(&labels_csv, csv).unwrap();
    let opts = TrainOptions {
        trees: 50,
        seed: 3,
        folds: 4,
    };
    let samples: Vec<LabelledImage> = stacks
        .iter()
        .zip(&picks)
        .map(|((stem, stack, labels), p)| LabelledImage {
            name: stem,
            stack,
            labels,
            picks: p,
        })
        .collect();
    let mem = train_images(&samples, &opts).unwrap();
    let disk = train(&out, &labels_csv, &opts).unwrap();
    assert_eq!(mem.features, disk.features);
    assert_eq!(mem.classes, disk.classes);
    assert_eq!(mem.validation.confusion, disk.validation.confusion);
    assert_eq!(mem.validation.cv_accuracy, disk.validation.cv_accuracy);
    assert_eq!(
        serde_json::to_value(&mem.forest).unwrap(),
        serde_json::to_value(&disk.forest).unwrap(),
        "the forests differ"
    );
    assert_eq!(mem.training.tables.len(), 2);
    assert_eq!(mem.training.labels.path, "picks");
    // The in-memory model, through its file, on the folder = classify_image on the buffers.
    let model_file = dir.join("model.json");
    mem.save(&model_file).unwrap();
    let model = Classifier::load(&model_file).unwrap();
    let summary = apply_folder(&model, &out).unwrap();
    assert!(summary.objects > 0);
    for (stem, stack, labels) in &stacks {
        let got = classify_image(&disk, stack, labels).unwrap();
        let t =
            parse_csv(&std::fs::read_to_string(out.join(format!("{stem}_objects.csv"))).unwrap());
        let col = |n: &str| t[0].iter().position(|h| h == n).unwrap();
        let (cl, cc, cp) = (col("label"), col("class"), col("class_probability"));
        let rows: Vec<&Vec<String>> = t[1..].iter().filter(|r| r.len() > 1).collect();
        assert_eq!(rows.len(), got.len(), "{stem}: objects");
        for (r, o) in rows.iter().zip(&got) {
            assert_eq!(r[cl].parse::<u32>().unwrap(), o.label);
            let class = o.class.map(|c| disk.classes[c].as_str()).unwrap_or("");
            assert_eq!(r[cc], class, "{stem} object {}", o.label);
            assert_eq!(
                r[cp],
                format!("{}", o.probability),
                "{stem} object {}",
                o.label
            );
        }
        // The picked objects come out with their picked class.
        let picked = &picks[stacks.iter().position(|s| &s.0 == stem).unwrap()];
        let right = picked
            .iter()
            .filter(|p| {
                got.iter()
                    .find(|o| o.label == p.label)
                    .and_then(|o| o.class)
                    .is_some_and(|c| disk.classes[c] == p.class)
            })
            .count();
        assert!(right >= 14, "{stem}: {right} of 16 picks recovered");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
