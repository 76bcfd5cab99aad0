//! Seconds per training step of the native trainer: forward, Cellpose loss, backward and AdamW
//! on a fixed batch of `batch × crop²` random crops, the network of a model package's ONNX.
//! One line of JSON per run (median and all step times, peak resident memory), for
//! `scripts/bench_train.sh`, which times the PyTorch recipe the same way in the same run.
//!
//!     cargo run --release -p cytoseg-core --example train_step_bench -- models/nuclei/model.onnx [steps] [batch] [crop]

use std::time::Instant;

use cytoseg_core::train::net::{Net, Value};
use cytoseg_core::train::optim::{AdamW, cellpose_loss};
use cytoseg_core::train::rng::Rng;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("models/nuclei/model.onnx");
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (steps, batch, crop) = (arg(2, 10), arg(3, 8), arg(4, 128));
    let bytes = std::fs::read(path).expect("read the ONNX model");
    let mut net = Net::from_onnx(&bytes).expect("build the network");
    let mut rng = Rng::new(0);
    let plane = crop * crop;
    let n_in = batch * net.in_channels * plane;
    let x: Vec<f32> = (0..n_in).map(|_| rng.uniform(0.0, 1.0) as f32).collect();
    let flows: Vec<f32> = (0..batch * 2 * plane)
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let cellprob: Vec<f32> = (0..batch * plane)
        .map(|_| f32::from(rng.bool(0.3)))
        .collect();
    let weight = vec![1.0f32; batch * plane];
    let sizes: Vec<usize> = net.params.iter().map(|p| p.data.len()).collect();
    let decay: Vec<bool> = net.params.iter().map(|p| p.decay).collect();
    let mut adam = AdamW::new(&sizes, 1e-4);
    let mut times = Vec::with_capacity(steps);
    // one warm-up step (allocator, page faults), not counted
    for i in 0..=steps {
        let t0 = Instant::now();
        let input = Value {
            shape: vec![batch, net.in_channels, crop, crop],
            data: x.clone(),
        };
        let tape = net.forward(input, true).expect("forward");
        let loss = cellpose_loss(
            &tape.output(&net).data,
            &flows,
            &cellprob,
            &weight,
            batch,
            plane,
            5.0,
        );
        let grads = net.backward(&tape, loss.grad);
        net.recycle(tape);
        let mut ps: Vec<&mut [f32]> = net
            .params
            .iter_mut()
            .map(|p| p.data.as_mut_slice())
            .collect();
        adam.step(&mut ps, &grads, &decay, 1e-3);
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{{\"impl\": \"cytoseg\", \"batch\": {batch}, \"crop\": {crop}, \"threads\": {}, \"median_s\": {median:.4}, \"steps_s\": {times:?}, \"peak_rss_mib\": {:.0}}}",
        rayon::current_num_threads(),
        peak_rss_mib()
    );
}
