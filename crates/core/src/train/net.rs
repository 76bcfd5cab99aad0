//! The network of a `cellpose-flows` model package, built from its ONNX graph: a program of
//! steps over numbered values with trainable parameters (convolution, batch-norm and dense
//! weights) and batch-norm running statistics, a forward pass in training or inference
//! mode, and the backward pass.
//!
//! The operators are those of Cellpose-style residual U-Nets as exported by PyTorch
//! (Conv, BatchNormalization, Relu, Add, MaxPool 2×2, nearest Resize ×2, the style vector's
//! ReduceMean / Pow / ReduceSum / Sqrt / Div, Gemm, Unsqueeze, Constant, Identity). A graph with
//! anything else is refused with the operator named.

use std::collections::HashMap;

use super::onnx::{self, Attr, Graph, Node};
use super::ops::{self, BnStats, ConvShape};
use crate::error::{Error, Result};

/// A tensor value: shape and data.
#[derive(Debug, Clone, Default)]
pub struct Value {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f32>,
}

/// A trainable parameter or a running statistic, named as in the ONNX graph.
#[derive(Debug, Clone)]
pub struct Param {
    /// Initializer name.
    pub name: String,
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
    /// Weight decay applies (matrices and filters; not biases or batch-norm affine terms).
    pub decay: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Conv {
        x: usize,
        out: usize,
        w: usize,
        b: Option<usize>,
        k: usize,
        pad: usize,
    },
    Bn {
        x: usize,
        out: usize,
        gamma: usize,
        beta: usize,
        mean: usize,
        var: usize,
        eps: f32,
        /// ONNX momentum: the weight of the old running value.
        momentum: f32,
    },
    Relu {
        x: usize,
        out: usize,
    },
    Add {
        a: usize,
        b: usize,
        out: usize,
    },
    AddScalar {
        x: usize,
        c: f32,
        out: usize,
    },
    MaxPool {
        x: usize,
        out: usize,
    },
    Upsample {
        x: usize,
        out: usize,
    },
    /// ReduceMean over H and W, keepdims 0: `[N, C, H, W] → [N, C]`.
    MeanHw {
        x: usize,
        out: usize,
    },
    Square {
        x: usize,
        out: usize,
    },
    /// ReduceSum over axis 1, keepdims 1: `[N, C] → [N, 1]`.
    SumC {
        x: usize,
        out: usize,
    },
    Sqrt {
        x: usize,
        out: usize,
    },
    /// `[N, C] / [N, 1]`.
    DivRow {
        a: usize,
        b: usize,
        out: usize,
    },
    /// `y = x · wᵀ + b`, `x` `[N, K]`, `w` `[M, K]`.
    Gemm {
        x: usize,
        out: usize,
        w: usize,
        b: usize,
    },
    /// Same data, new shape (Unsqueeze, Identity).
    Reshape {
        x: usize,
        out: usize,
        shape: Vec<isize>,
    },
}

/// The network: steps, parameters and running statistics.
#[derive(Debug, Clone)]
pub struct Net {
    steps: Vec<Step>,
    /// Trainable parameters.
    pub params: Vec<Param>,
    /// Batch-norm running means and variances (not trained by gradients).
    pub buffers: Vec<Param>,
    n_values: usize,
    input: usize,
    output: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Name of the graph input.
    pub input_name: String,
    pool: ops::Pool,
}

/// What a forward pass keeps for the backward pass.
pub struct Tape {
    values: Vec<Option<Value>>,
    stats: HashMap<usize, BnStats>,
}

impl Tape {
    /// The network output `[N, C, H, W]`.
    pub fn output(&self, net: &Net) -> &Value {
        self.values[net.output].as_ref().expect("forward pass ran")
    }
}

fn unsupported(msg: String) -> Error {
    Error::invalid(format!(
        "this model's network cannot be trained here: {msg}"
    ))
}

#[derive(Default)]
struct Builder {
    ids: HashMap<String, usize>,
    n: usize,
    params: Vec<Param>,
    param_ids: HashMap<String, usize>,
    buffers: Vec<Param>,
    buffer_ids: HashMap<String, usize>,
    consts: HashMap<String, onnx::Tensor>,
    alias: HashMap<String, String>,
}

impl Builder {
    fn value(&mut self, name: &str) -> usize {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        self.ids.insert(name.to_string(), self.n);
        self.n += 1;
        self.n - 1
    }

    fn existing(&self, node: &Node, name: &str) -> Result<usize> {
        self.ids.get(name).copied().ok_or_else(|| {
            unsupported(format!(
                "{} node reads {name:?} before it is computed",
                node.op_type
            ))
        })
    }

    fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        let mut n = name;
        while let Some(a) = self.alias.get(n) {
            n = a;
        }
        n
    }

    fn init<'g>(&self, g: &'g Graph, node: &Node, name: &str) -> Result<&'g onnx::Tensor> {
        let n = self.resolve(name);
        g.initializers
            .get(n)
            .filter(|t| t.data_type == onnx::FLOAT)
            .ok_or_else(|| {
                unsupported(format!(
                    "{} node's input {name:?} is not a float initializer",
                    node.op_type
                ))
            })
    }

    fn param(&mut self, g: &Graph, node: &Node, name: &str, decay: bool) -> Result<usize> {
        let t = self.init(g, node, name)?;
        let key = t.name.clone();
        if let Some(&i) = self.param_ids.get(&key) {
            return Ok(i);
        }
        self.params.push(Param {
            name: key.clone(),
            dims: t.dims.clone(),
            data: t.floats.clone(),
            decay,
        });
        self.param_ids.insert(key, self.params.len() - 1);
        Ok(self.params.len() - 1)
    }

    fn buffer(&mut self, g: &Graph, node: &Node, name: &str) -> Result<usize> {
        let t = self.init(g, node, name)?;
        let key = t.name.clone();
        if let Some(&i) = self.buffer_ids.get(&key) {
            return Ok(i);
        }
        self.buffers.push(Param {
            name: key.clone(),
            dims: t.dims.clone(),
            data: t.floats.clone(),
            decay: false,
        });
        self.buffer_ids.insert(key, self.buffers.len() - 1);
        Ok(self.buffers.len() - 1)
    }

    fn scalar(&self, g: &Graph, name: &str) -> Option<f32> {
        let n = self.resolve(name);
        let t = self.consts.get(n).or_else(|| g.initializers.get(n))?;
        (t.floats.len() == 1).then(|| t.floats[0])
    }

    fn ints(&self, g: &Graph, name: &str) -> Option<Vec<i64>> {
        let n = self.resolve(name);
        let t = self.consts.get(n).or_else(|| g.initializers.get(n))?;
        (t.data_type == onnx::INT64).then(|| t.ints.clone())
    }
}

impl Net {
    /// Builds the network of an ONNX model (bytes of `model.onnx`).
    pub fn from_onnx(model: &[u8]) -> Result<Net> {
        let g = onnx::parse(model)?;
        Self::from_graph(&g)
    }

    /// Builds the network of a decoded graph.
    pub fn from_graph(g: &Graph) -> Result<Net> {
        let [input] = g.inputs.as_slice() else {
            return Err(unsupported(format!(
                "{} graph inputs, expected 1",
                g.inputs.len()
            )));
        };
        let [output] = g.outputs.as_slice() else {
            return Err(unsupported(format!(
                "{} graph outputs, expected 1",
                g.outputs.len()
            )));
        };
        let in_channels = match input.dims.get(1) {
            Some(Some(c)) if *c > 0 => *c as usize,
            _ => return Err(unsupported("the input's channel count is not fixed".into())),
        };
        let mut b = Builder::default();
        let input_id = b.value(&input.name);
        let mut steps = Vec::new();
        for node in &g.nodes {
            if !node.domain.is_empty() && node.domain != "ai.onnx" {
                return Err(unsupported(format!("operator domain {:?}", node.domain)));
            }
            let inp = |i: usize| node.inputs.get(i).map(String::as_str).unwrap_or("");
            let out_name = node.outputs.first().cloned().unwrap_or_default();
            match node.op_type.as_str() {
                "Constant" => {
                    let t = match node.attrs.get("value") {
                        Some(Attr::Tensor(t)) => t.clone(),
                        _ => return Err(unsupported("a Constant without a tensor value".into())),
                    };
                    b.consts.insert(out_name, t);
                }
                "Identity"
                    if g.initializers.contains_key(b.resolve(inp(0)))
                        || b.consts.contains_key(inp(0)) =>
                {
                    let src = b.resolve(inp(0)).to_string();
                    b.alias.insert(out_name, src);
                }
                "Identity" => {
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::Reshape {
                        x,
                        out,
                        shape: vec![],
                    });
                }
                "Conv" => {
                    let x = b.existing(node, inp(0))?;
                    let w = b.param(g, node, inp(1), true)?;
                    let bias = if inp(2).is_empty() {
                        None
                    } else {
                        Some(b.param(g, node, inp(2), false)?)
                    };
                    let dims = &b.params[w].dims;
                    let k = *dims.get(2).unwrap_or(&0);
                    let ok = dims.len() == 4
                        && dims[2] == dims[3]
                        && node.int("group", 1) == 1
                        && node
                            .ints("strides")
                            .is_none_or(|s| s.iter().all(|&v| v == 1))
                        && node
                            .ints("dilations")
                            .is_none_or(|s| s.iter().all(|&v| v == 1))
                        && node
                            .ints("pads")
                            .is_none_or(|p| p.iter().all(|&v| v == (k / 2) as i64))
                        && k % 2 == 1
                        && node.string("auto_pad").is_none_or(|a| a == "NOTSET");
                    if !ok {
                        return Err(unsupported(format!(
                            "Conv {:?}: only odd square kernels, stride 1, 'same' padding, one group",
                            node.outputs
                        )));
                    }
                    let out = b.value(&out_name);
                    steps.push(Step::Conv {
                        x,
                        out,
                        w,
                        b: bias,
                        k,
                        pad: k / 2,
                    });
                }
                "BatchNormalization" => {
                    let x = b.existing(node, inp(0))?;
                    let gamma = b.param(g, node, inp(1), false)?;
                    let beta = b.param(g, node, inp(2), false)?;
                    let mean = b.buffer(g, node, inp(3))?;
                    let var = b.buffer(g, node, inp(4))?;
                    let out = b.value(&out_name);
                    steps.push(Step::Bn {
                        x,
                        out,
                        gamma,
                        beta,
                        mean,
                        var,
                        eps: node.float("epsilon", 1e-5),
                        momentum: node.float("momentum", 0.9),
                    });
                }
                "Relu" => {
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::Relu { x, out });
                }
                "Add" => {
                    let out = b.value(&out_name);
                    if let Some(c) = b.scalar(g, inp(1)) {
                        let x = b.existing(node, inp(0))?;
                        steps.push(Step::AddScalar { x, c, out });
                    } else {
                        let a = b.existing(node, inp(0))?;
                        let bb = b.existing(node, inp(1))?;
                        steps.push(Step::Add { a, b: bb, out });
                    }
                }
                "MaxPool" => {
                    let ok = node.ints("kernel_shape") == Some(&[2, 2][..])
                        && node.ints("strides") == Some(&[2, 2][..])
                        && node.int("ceil_mode", 0) == 0
                        && node.ints("pads").is_none_or(|p| p.iter().all(|&v| v == 0));
                    if !ok {
                        return Err(unsupported("MaxPool other than 2×2 stride 2".into()));
                    }
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::MaxPool { x, out });
                }
                "Resize" | "Upsample" => {
                    let scales_name = if node.op_type == "Resize" {
                        inp(2)
                    } else {
                        inp(1)
                    };
                    let n = b.resolve(scales_name).to_string();
                    let scales = b
                        .consts
                        .get(&n)
                        .or_else(|| g.initializers.get(&n))
                        .map(|t| t.floats.clone());
                    let ok = scales.as_deref() == Some(&[1.0, 1.0, 2.0, 2.0][..])
                        && node.string("mode").is_none_or(|m| m == "nearest")
                        && node
                            .string("coordinate_transformation_mode")
                            .is_none_or(|m| m == "asymmetric")
                        && node.string("nearest_mode").is_none_or(|m| m == "floor");
                    if !ok {
                        return Err(unsupported("Resize other than nearest ×2".into()));
                    }
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::Upsample { x, out });
                }
                "ReduceMean" => {
                    let axes = node
                        .ints("axes")
                        .map(|a| a.to_vec())
                        .or_else(|| b.ints(g, inp(1)));
                    if axes.as_deref() != Some(&[2, 3][..]) || node.int("keepdims", 1) != 0 {
                        return Err(unsupported(
                            "ReduceMean other than over H, W without keepdims".into(),
                        ));
                    }
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::MeanHw { x, out });
                }
                "Pow" => {
                    if b.scalar(g, inp(1)) != Some(2.0) {
                        return Err(unsupported("Pow other than squaring".into()));
                    }
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::Square { x, out });
                }
                "ReduceSum" => {
                    let axes = node
                        .ints("axes")
                        .map(|a| a.to_vec())
                        .or_else(|| b.ints(g, inp(1)));
                    if axes.as_deref() != Some(&[1][..]) || node.int("keepdims", 1) != 1 {
                        return Err(unsupported(
                            "ReduceSum other than over axis 1 with keepdims".into(),
                        ));
                    }
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::SumC { x, out });
                }
                "Sqrt" => {
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::Sqrt { x, out });
                }
                "Div" => {
                    let a = b.existing(node, inp(0))?;
                    let bb = b.existing(node, inp(1))?;
                    let out = b.value(&out_name);
                    steps.push(Step::DivRow { a, b: bb, out });
                }
                "Gemm" => {
                    let ok = node.int("transB", 0) == 1
                        && node.int("transA", 0) == 0
                        && node.float("alpha", 1.0) == 1.0
                        && node.float("beta", 1.0) == 1.0;
                    if !ok {
                        return Err(unsupported("Gemm other than x·Wᵀ + b".into()));
                    }
                    let x = b.existing(node, inp(0))?;
                    let w = b.param(g, node, inp(1), true)?;
                    let bias = b.param(g, node, inp(2), false)?;
                    let out = b.value(&out_name);
                    steps.push(Step::Gemm { x, out, w, b: bias });
                }
                "Unsqueeze" => {
                    let axes = node
                        .ints("axes")
                        .map(|a| a.to_vec())
                        .or_else(|| b.ints(g, inp(1)));
                    let Some(axes) = axes else {
                        return Err(unsupported("Unsqueeze without constant axes".into()));
                    };
                    let x = b.existing(node, inp(0))?;
                    let out = b.value(&out_name);
                    steps.push(Step::Reshape {
                        x,
                        out,
                        shape: axes.iter().map(|&a| a as isize).collect(),
                    });
                }
                op => return Err(unsupported(format!("operator {op} ({:?})", node.outputs))),
            }
        }
        let output_id = b
            .ids
            .get(&output.name)
            .copied()
            .ok_or_else(|| unsupported("the graph output is never computed".into()))?;
        let out_channels = match output.dims.get(1) {
            Some(Some(c)) if *c > 0 => *c as usize,
            _ => 3,
        };
        Ok(Net {
            steps,
            params: b.params,
            buffers: b.buffers,
            n_values: b.n,
            input: input_id,
            output: output_id,
            in_channels,
            out_channels,
            input_name: input.name.clone(),
            pool: ops::Pool::default(),
        })
    }

    /// Returns a spent forward pass's buffers for reuse by the next step.
    pub fn recycle(&self, tape: Tape) {
        for v in tape.values.into_iter().flatten() {
            self.pool.give(v.data);
        }
    }

    /// Frees the buffers kept for reuse.
    pub fn release_buffers(&self) {
        self.pool.clear();
    }

    /// Widens a one-channel network to take `channels` input channels, keeping its function
    /// on images whose channels are all equal: every batch norm reading the input gets the
    /// parent's per-channel parameters and statistics for each new channel, and every
    /// convolution reading the input (directly or through those batch norms and ReLUs) gets
    /// the parent's filter divided by `channels` for each channel. Fine-tuning then learns
    /// what the channels bring.
    pub fn widen_input(&mut self, channels: usize) -> Result<()> {
        if channels == self.in_channels {
            return Ok(());
        }
        if self.in_channels != 1 || channels == 0 || channels > 16 {
            return Err(Error::invalid(format!(
                "a network taking {} channel(s) cannot be widened to {channels} (only one channel to 2..=16)",
                self.in_channels
            )));
        }
        // values that still hold one plane per input channel
        let mut per_channel = vec![false; self.n_values];
        per_channel[self.input] = true;
        let mut params_done = std::collections::HashSet::new();
        let mut buffers_done = std::collections::HashSet::new();
        let c = channels;
        for step in &self.steps {
            match step {
                Step::Bn {
                    x,
                    out,
                    gamma,
                    beta,
                    mean,
                    var,
                    ..
                } if per_channel[*x] => {
                    for p in [*gamma, *beta] {
                        if params_done.insert(p) {
                            let v = self.params[p].data[0];
                            self.params[p].data = vec![v; c];
                            self.params[p].dims = vec![c];
                        }
                    }
                    for b in [*mean, *var] {
                        if buffers_done.insert(b) {
                            let v = self.buffers[b].data[0];
                            self.buffers[b].data = vec![v; c];
                            self.buffers[b].dims = vec![c];
                        }
                    }
                    per_channel[*out] = true;
                }
                Step::Relu { x, out } if per_channel[*x] => per_channel[*out] = true,
                Step::Conv { x, w, .. } if per_channel[*x] => {
                    if params_done.insert(*w) {
                        let p = &mut self.params[*w];
                        let (cout, kk) = (p.dims[0], p.dims[2] * p.dims[3]);
                        let mut data = Vec::with_capacity(cout * c * kk);
                        for o in 0..cout {
                            let filt = &p.data[o * kk..(o + 1) * kk];
                            for _ in 0..c {
                                data.extend(filt.iter().map(|v| v / c as f32));
                            }
                        }
                        p.data = data;
                        p.dims[1] = c;
                    }
                }
                other => {
                    let reads_input = match other {
                        Step::Add { a, b, .. } | Step::DivRow { a, b, .. } => {
                            per_channel[*a] || per_channel[*b]
                        }
                        Step::Bn { x, .. }
                        | Step::Relu { x, .. }
                        | Step::Conv { x, .. }
                        | Step::AddScalar { x, .. }
                        | Step::MaxPool { x, .. }
                        | Step::Upsample { x, .. }
                        | Step::MeanHw { x, .. }
                        | Step::Square { x, .. }
                        | Step::SumC { x, .. }
                        | Step::Sqrt { x, .. }
                        | Step::Gemm { x, .. }
                        | Step::Reshape { x, .. } => per_channel[*x],
                    };
                    if reads_input {
                        return Err(unsupported(
                            "the input feeds an operation other than batch norm, ReLU and convolution; it cannot be widened".into(),
                        ));
                    }
                }
            }
        }
        self.in_channels = c;
        Ok(())
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.data.len()).sum()
    }

    /// The forward pass on `x` (`[N, C, H, W]`, H and W multiples of 8 for this U-Net's
    /// three poolings). `train`: batch norm uses the batch's statistics and the running
    /// statistics are updated; else the running statistics are used.
    pub fn forward(&mut self, x: Value, train: bool) -> Result<Tape> {
        if x.shape.len() != 4 || x.shape[1] != self.in_channels {
            return Err(Error::invalid(format!(
                "network input of shape {:?}, expected [N, {}, H, W]",
                x.shape, self.in_channels
            )));
        }
        let mut v: Vec<Option<Value>> = vec![None; self.n_values];
        v[self.input] = Some(x);
        let mut stats = HashMap::new();
        let mut updates: Vec<(usize, usize, BnStats, f32)> = Vec::new();
        for (si, step) in self.steps.iter().enumerate() {
            let get = |v: &Vec<Option<Value>>, i: usize| -> Value {
                v[i].clone().expect("value computed")
            };
            let (out, val) = match step {
                Step::Conv {
                    x,
                    out,
                    w,
                    b,
                    k,
                    pad,
                } => {
                    let xv = v[*x].as_ref().expect("value computed");
                    let s = conv_shape(&xv.shape, &self.params[*w].dims, *k, *pad)?;
                    let y = ops::conv_forward(
                        &xv.data,
                        &self.params[*w].data,
                        b.map(|b| self.params[b].data.as_slice()),
                        &s,
                        &self.pool,
                    );
                    (
                        *out,
                        Value {
                            shape: vec![s.n, s.cout, s.h, s.w],
                            data: y,
                        },
                    )
                }
                Step::Bn {
                    x,
                    out,
                    gamma,
                    beta,
                    mean,
                    var,
                    eps,
                    momentum,
                } => {
                    let xv = v[*x].as_ref().expect("value computed");
                    let (n, c, plane) = nchw(&xv.shape);
                    if c != self.params[*gamma].data.len() {
                        return Err(Error::invalid("batch norm channel mismatch"));
                    }
                    let y = if train {
                        let st = ops::bn_stats(&xv.data, n, c, plane, *eps);
                        let y = ops::bn_apply(
                            &xv.data,
                            n,
                            c,
                            plane,
                            &st.mean,
                            &st.invstd,
                            &self.params[*gamma].data,
                            &self.params[*beta].data,
                            &self.pool,
                        );
                        updates.push((*mean, *var, st.clone(), *momentum));
                        stats.insert(si, st);
                        y
                    } else {
                        let invstd: Vec<f32> = self.buffers[*var]
                            .data
                            .iter()
                            .map(|&r| 1.0 / (r + eps).sqrt())
                            .collect();
                        ops::bn_apply(
                            &xv.data,
                            n,
                            c,
                            plane,
                            &self.buffers[*mean].data,
                            &invstd,
                            &self.params[*gamma].data,
                            &self.params[*beta].data,
                            &self.pool,
                        )
                    };
                    (
                        *out,
                        Value {
                            shape: xv.shape.clone(),
                            data: y,
                        },
                    )
                }
                Step::Relu { x, out } => {
                    let xv = v[*x].as_ref().expect("value computed");
                    (
                        *out,
                        Value {
                            shape: xv.shape.clone(),
                            data: ops::relu(&xv.data, &self.pool),
                        },
                    )
                }
                Step::Add { a, b, out } => {
                    let (av, bv) = (
                        v[*a].as_ref().expect("value"),
                        v[*b].as_ref().expect("value"),
                    );
                    let y = if av.shape == bv.shape {
                        Value {
                            shape: av.shape.clone(),
                            data: ops::add(&av.data, &bv.data, &self.pool),
                        }
                    } else if is_plane_broadcast(&av.shape, &bv.shape) {
                        Value {
                            shape: av.shape.clone(),
                            data: ops::add_per_plane(
                                &av.data,
                                &bv.data,
                                av.shape[2] * av.shape[3],
                                &self.pool,
                            ),
                        }
                    } else if is_plane_broadcast(&bv.shape, &av.shape) {
                        Value {
                            shape: bv.shape.clone(),
                            data: ops::add_per_plane(
                                &bv.data,
                                &av.data,
                                bv.shape[2] * bv.shape[3],
                                &self.pool,
                            ),
                        }
                    } else {
                        return Err(Error::invalid(format!(
                            "Add of shapes {:?} and {:?}",
                            av.shape, bv.shape
                        )));
                    };
                    (*out, y)
                }
                Step::AddScalar { x, c, out } => {
                    let mut y = get(&v, *x);
                    y.data.iter_mut().for_each(|e| *e += c);
                    (*out, y)
                }
                Step::MaxPool { x, out } => {
                    let xv = v[*x].as_ref().expect("value computed");
                    let (n, c, h, w) = dims4(&xv.shape)?;
                    (
                        *out,
                        Value {
                            shape: vec![n, c, h / 2, w / 2],
                            data: ops::maxpool2(&xv.data, n * c, h, w, &self.pool),
                        },
                    )
                }
                Step::Upsample { x, out } => {
                    let xv = v[*x].as_ref().expect("value computed");
                    let (n, c, h, w) = dims4(&xv.shape)?;
                    (
                        *out,
                        Value {
                            shape: vec![n, c, 2 * h, 2 * w],
                            data: ops::upsample2(&xv.data, n * c, h, w, &self.pool),
                        },
                    )
                }
                Step::MeanHw { x, out } => {
                    let xv = v[*x].as_ref().expect("value computed");
                    let (n, c, h, w) = dims4(&xv.shape)?;
                    let mut y = ops::plane_sums(&xv.data, h * w);
                    y.iter_mut().for_each(|e| *e /= (h * w) as f32);
                    (
                        *out,
                        Value {
                            shape: vec![n, c],
                            data: y,
                        },
                    )
                }
                Step::Square { x, out } => {
                    let mut y = get(&v, *x);
                    y.data.iter_mut().for_each(|e| *e *= *e);
                    (*out, y)
                }
                Step::SumC { x, out } => {
                    let xv = v[*x].as_ref().expect("value computed");
                    let (n, c) = (xv.shape[0], xv.data.len() / xv.shape[0].max(1));
                    let y: Vec<f32> = xv.data.chunks(c.max(1)).map(|r| r.iter().sum()).collect();
                    (
                        *out,
                        Value {
                            shape: vec![n, 1],
                            data: y,
                        },
                    )
                }
                Step::Sqrt { x, out } => {
                    let mut y = get(&v, *x);
                    y.data.iter_mut().for_each(|e| *e = e.sqrt());
                    (*out, y)
                }
                Step::DivRow { a, b, out } => {
                    let (av, bv) = (
                        v[*a].as_ref().expect("value"),
                        v[*b].as_ref().expect("value"),
                    );
                    let c = av.data.len() / bv.data.len().max(1);
                    let y: Vec<f32> = av
                        .data
                        .iter()
                        .enumerate()
                        .map(|(i, &e)| e / bv.data[i / c])
                        .collect();
                    (
                        *out,
                        Value {
                            shape: av.shape.clone(),
                            data: y,
                        },
                    )
                }
                Step::Gemm { x, out, w, b } => {
                    let xv = v[*x].as_ref().expect("value computed");
                    let (wd, bd) = (&self.params[*w], &self.params[*b]);
                    let (m, k) = (wd.dims[0], wd.dims[1]);
                    let n = xv.data.len() / k;
                    let mut y = vec![0.0f32; n * m];
                    for i in 0..n {
                        for j in 0..m {
                            let mut acc = bd.data[j];
                            for t in 0..k {
                                acc += xv.data[i * k + t] * wd.data[j * k + t];
                            }
                            y[i * m + j] = acc;
                        }
                    }
                    (
                        *out,
                        Value {
                            shape: vec![n, m],
                            data: y,
                        },
                    )
                }
                Step::Reshape { x, out, shape } => {
                    let mut y = get(&v, *x);
                    for &a in shape {
                        let a = if a < 0 {
                            (y.shape.len() as isize + 1 + a) as usize
                        } else {
                            a as usize
                        };
                        y.shape.insert(a.min(y.shape.len()), 1);
                    }
                    (*out, y)
                }
            };
            v[out] = Some(val);
        }
        // running statistics, each buffer once (batch norms on the same input share them)
        let mut done = std::collections::HashSet::new();
        for (mean, var, st, momentum) in updates {
            if done.insert(mean) {
                for (r, b) in self.buffers[mean].data.iter_mut().zip(&st.mean) {
                    *r = *r * momentum + b * (1.0 - momentum);
                }
            }
            if done.insert(var) {
                for (r, b) in self.buffers[var].data.iter_mut().zip(&st.var_unbiased) {
                    *r = *r * momentum + b * (1.0 - momentum);
                }
            }
        }
        Ok(Tape { values: v, stats })
    }

    /// The backward pass from the gradient of the loss with respect to the output; returns
    /// one gradient per parameter (same order as [`Net::params`]).
    pub fn backward(&self, tape: &Tape, d_output: Vec<f32>) -> Vec<Vec<f32>> {
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; self.n_values];
        let mut pg: Vec<Vec<f32>> = self
            .params
            .iter()
            .map(|p| vec![0.0; p.data.len()])
            .collect();
        grads[self.output] = Some(d_output);
        let val = |i: usize| tape.values[i].as_ref().expect("forward value");
        fn add_grad(pool: &ops::Pool, grads: &mut [Option<Vec<f32>>], i: usize, g: Vec<f32>) {
            match &mut grads[i] {
                Some(acc) => {
                    ops::accumulate(acc, &g);
                    pool.give(g);
                }
                slot => *slot = Some(g),
            }
        }
        for (si, step) in self.steps.iter().enumerate().rev() {
            let out = step_out(step);
            let Some(dy) = grads[out].take() else {
                continue;
            };
            match step {
                Step::Conv {
                    x, w, b, k, pad, ..
                } => {
                    let xv = val(*x);
                    let s = conv_shape(&xv.shape, &self.params[*w].dims, *k, *pad)
                        .expect("checked in forward");
                    let need_dx = *x != self.input;
                    let g = ops::conv_backward(
                        &xv.data,
                        &self.params[*w].data,
                        &dy,
                        &s,
                        need_dx,
                        &self.pool,
                    );
                    ops::accumulate(&mut pg[*w], &g.dw);
                    if let Some(b) = b {
                        ops::accumulate(&mut pg[*b], &g.db);
                    }
                    if let Some(dx) = g.dx {
                        add_grad(&self.pool, &mut grads, *x, dx);
                    }
                    self.pool.give(dy);
                }
                Step::Bn { x, gamma, beta, .. } => {
                    let xv = val(*x);
                    let (n, c, plane) = nchw(&xv.shape);
                    let st = tape.stats.get(&si).expect("training-mode forward pass");
                    let (dx, dg, db) = ops::bn_backward(
                        &xv.data,
                        &dy,
                        n,
                        c,
                        plane,
                        st,
                        &self.params[*gamma].data,
                        &self.pool,
                    );
                    ops::accumulate(&mut pg[*gamma], &dg);
                    ops::accumulate(&mut pg[*beta], &db);
                    if *x != self.input {
                        add_grad(&self.pool, &mut grads, *x, dx);
                    } else {
                        self.pool.give(dx);
                    }
                    self.pool.give(dy);
                }
                Step::Relu { out, x } => {
                    let dx = ops::relu_backward(&val(*out).data, &dy, &self.pool);
                    add_grad(&self.pool, &mut grads, *x, dx);
                    self.pool.give(dy);
                }
                Step::Add { a, b, .. } => {
                    let (av, bv) = (val(*a), val(*b));
                    if av.shape == bv.shape {
                        let mut copy = self.pool.take(dy.len());
                        copy.copy_from_slice(&dy);
                        add_grad(&self.pool, &mut grads, *b, copy);
                        add_grad(&self.pool, &mut grads, *a, dy);
                    } else if is_plane_broadcast(&av.shape, &bv.shape) {
                        add_grad(
                            &self.pool,
                            &mut grads,
                            *b,
                            ops::plane_sums(&dy, av.shape[2] * av.shape[3]),
                        );
                        add_grad(&self.pool, &mut grads, *a, dy);
                    } else {
                        add_grad(
                            &self.pool,
                            &mut grads,
                            *a,
                            ops::plane_sums(&dy, bv.shape[2] * bv.shape[3]),
                        );
                        add_grad(&self.pool, &mut grads, *b, dy);
                    }
                }
                Step::AddScalar { x, .. } | Step::Reshape { x, .. } => {
                    add_grad(&self.pool, &mut grads, *x, dy)
                }
                Step::MaxPool { x, out } => {
                    let xv = val(*x);
                    let (n, c, h, w) = dims4(&xv.shape).expect("checked");
                    add_grad(
                        &self.pool,
                        &mut grads,
                        *x,
                        ops::maxpool2_backward(
                            &xv.data,
                            &val(*out).data,
                            &dy,
                            n * c,
                            h,
                            w,
                            &self.pool,
                        ),
                    );
                    self.pool.give(dy);
                }
                Step::Upsample { x, .. } => {
                    let (n, c, h, w) = dims4(&val(*x).shape).expect("checked");
                    add_grad(
                        &self.pool,
                        &mut grads,
                        *x,
                        ops::upsample2_backward(&dy, n * c, h, w, &self.pool),
                    );
                    self.pool.give(dy);
                }
                Step::MeanHw { x, .. } => {
                    let xv = val(*x);
                    let plane = xv.shape[2] * xv.shape[3];
                    let mut dx = vec![0.0f32; xv.data.len()];
                    for (r, &g) in dx.chunks_mut(plane).zip(&dy) {
                        r.fill(g / plane as f32);
                    }
                    add_grad(&self.pool, &mut grads, *x, dx);
                }
                Step::Square { x, .. } => {
                    let dx = val(*x)
                        .data
                        .iter()
                        .zip(&dy)
                        .map(|(&a, &g)| 2.0 * a * g)
                        .collect();
                    add_grad(&self.pool, &mut grads, *x, dx);
                }
                Step::SumC { x, .. } => {
                    let xv = val(*x);
                    let c = xv.data.len() / dy.len().max(1);
                    let dx = (0..xv.data.len()).map(|i| dy[i / c]).collect();
                    add_grad(&self.pool, &mut grads, *x, dx);
                }
                Step::Sqrt { out, x } => {
                    let dx = val(*out)
                        .data
                        .iter()
                        .zip(&dy)
                        .map(|(&s, &g)| g / (2.0 * s))
                        .collect();
                    add_grad(&self.pool, &mut grads, *x, dx);
                }
                Step::DivRow { a, b, .. } => {
                    let (av, bv) = (val(*a), val(*b));
                    let c = av.data.len() / bv.data.len().max(1);
                    let da: Vec<f32> = dy
                        .iter()
                        .enumerate()
                        .map(|(i, &g)| g / bv.data[i / c])
                        .collect();
                    let mut db = vec![0.0f32; bv.data.len()];
                    for (i, &g) in dy.iter().enumerate() {
                        let r = i / c;
                        db[r] -= g * av.data[i] / (bv.data[r] * bv.data[r]);
                    }
                    add_grad(&self.pool, &mut grads, *a, da);
                    add_grad(&self.pool, &mut grads, *b, db);
                }
                Step::Gemm { x, w, b, .. } => {
                    let xv = val(*x);
                    let (m, k) = (self.params[*w].dims[0], self.params[*w].dims[1]);
                    let n = xv.data.len() / k;
                    let mut dx = vec![0.0f32; n * k];
                    for i in 0..n {
                        for j in 0..m {
                            let g = dy[i * m + j];
                            pg[*b][j] += g;
                            for t in 0..k {
                                pg[*w][j * k + t] += g * xv.data[i * k + t];
                                dx[i * k + t] += g * self.params[*w].data[j * k + t];
                            }
                        }
                    }
                    add_grad(&self.pool, &mut grads, *x, dx);
                }
            }
        }
        pg
    }
}

fn step_out(s: &Step) -> usize {
    match s {
        Step::Conv { out, .. }
        | Step::Bn { out, .. }
        | Step::Relu { out, .. }
        | Step::Add { out, .. }
        | Step::AddScalar { out, .. }
        | Step::MaxPool { out, .. }
        | Step::Upsample { out, .. }
        | Step::MeanHw { out, .. }
        | Step::Square { out, .. }
        | Step::SumC { out, .. }
        | Step::Sqrt { out, .. }
        | Step::DivRow { out, .. }
        | Step::Gemm { out, .. }
        | Step::Reshape { out, .. } => *out,
    }
}

fn is_plane_broadcast(big: &[usize], small: &[usize]) -> bool {
    big.len() == 4
        && small.len() == 4
        && small[0] == big[0]
        && small[1] == big[1]
        && small[2] == 1
        && small[3] == 1
}

fn nchw(shape: &[usize]) -> (usize, usize, usize) {
    let n = shape.first().copied().unwrap_or(1);
    let c = shape.get(1).copied().unwrap_or(1);
    let plane = shape.iter().skip(2).product();
    (n, c, plane)
}

fn dims4(shape: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match shape {
        [n, c, h, w] => Ok((*n, *c, *h, *w)),
        _ => Err(Error::invalid(format!(
            "expected a 4-D value, got shape {shape:?}"
        ))),
    }
}

fn conv_shape(x: &[usize], w: &[usize], k: usize, pad: usize) -> Result<ConvShape> {
    let (n, cin, h, wd) = dims4(x)?;
    if w.len() != 4 || w[1] != cin {
        return Err(Error::invalid(format!(
            "Conv input {x:?} against filters {w:?}"
        )));
    }
    Ok(ConvShape {
        n,
        cin,
        cout: w[0],
        h,
        w: wd,
        k,
        pad,
    })
}
