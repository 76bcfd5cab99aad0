//! The native trainer against ONNX Runtime: the network built from a package's ONNX graph
//! computes what ORT computes, and weights written back into the graph are what ORT runs.

mod common;

use std::path::Path;
use std::time::Instant;

use cytoseg::core::io::image::read_image;
use cytoseg::core::model::{Device, LoadOptions, Model, preprocess};
use cytoseg::core::train::net::{Net, Value};
use ndarray::ArrayView4;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load_model(dir: &Path) -> Option<Model> {
    let Some(lib) = common::ort_library() else {
        eprintln!(
            "SKIPPED: no ONNX Runtime library (set ORT_DYLIB_PATH or pip install onnxruntime into .venv)"
        );
        return None;
    };
    let opts = LoadOptions {
        device: Device::Cpu,
        ort_search: vec![("test".into(), lib)],
        model_dirs: vec![],
        threads: 0,
    };
    Some(Model::load(dir.to_str().unwrap(), &opts).expect("load model"))
}

/// A normalized crop of the bundled example image, `[n, 1, s, s]`.
fn example_crops(n: usize, s: usize) -> Value {
    let img = read_image(&repo().join("models/examples/nuclei_example.tif")).unwrap();
    let view = img.view().unwrap();
    let (h, w) = (view.height, view.width);
    let mut plane = view.plane(0);
    preprocess::normalize99(&mut plane, h, w, 1.0, 99.0);
    let mut data = Vec::with_capacity(n * s * s);
    for i in 0..n {
        let (y0, x0) = ((i * 37) % (h - s), (i * 53) % (w - s));
        for y in 0..s {
            data.extend_from_slice(&plane[(y0 + y) * w + x0..][..s]);
        }
    }
    Value {
        shape: vec![n, 1, s, s],
        data,
    }
}

#[test]
fn trainer_forward_equals_onnx_runtime_on_real_crops() {
    let dir = repo().join("models/nuclei");
    let Some(model) = load_model(&dir) else {
        return;
    };
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let mut net = Net::from_onnx(&bytes).unwrap();
    let x = example_crops(2, 128);
    let ort = model
        .run_network(ArrayView4::from_shape((2, 1, 128, 128), &x.data).unwrap())
        .unwrap();
    let t0 = Instant::now();
    let tape = net.forward(x, false).unwrap();
    eprintln!("eval forward 2×128²: {:.3}s", t0.elapsed().as_secs_f64());
    let ours = &tape.output(&net).data;
    let worst = ours
        .iter()
        .zip(&ort)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("max |trainer − ORT| = {worst:e}");
    assert!(worst <= 1e-4, "max |trainer − ORT| = {worst}");
}

#[test]
fn one_training_step_timing() {
    let bytes = std::fs::read(repo().join("models/nuclei/model.onnx")).unwrap();
    let mut net = Net::from_onnx(&bytes).unwrap();
    for _ in 0..3 {
        let x = example_crops(8, 128);
        let t0 = Instant::now();
        let tape = net.forward(x, true).unwrap();
        let t1 = Instant::now();
        let d = vec![1e-3f32; tape.output(&net).data.len()];
        let g = net.backward(&tape, d);
        let t2 = Instant::now();
        eprintln!(
            "train step 8×128²: forward {:.3}s backward {:.3}s ({} grads)",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            g.len()
        );
    }
}
