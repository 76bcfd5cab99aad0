//! Cellpose's training loss and the AdamW optimiser with linear warm-up and cosine decay.

use rayon::prelude::*;

/// The loss of one batch and its gradient with respect to the network output.
pub struct Loss {
    /// Total loss: flow MSE / 2 + cell-probability BCE.
    pub value: f64,
    /// Flow term.
    pub flow: f64,
    /// Cell-probability term.
    pub cellprob: f64,
    /// d loss / d output, `[N, 3, S, S]`.
    pub grad: Vec<f32>,
}

/// Cellpose's `_loss_fn_seg`: `MSE(y[:, :2], flow_scale · flows) / 2 + BCEWithLogits(y[:, 2],
/// cellprob)`, each a mean over the pixels where `weight` is 1 (a weighted mean: pixels of
/// weight 0, outside the annotated region, do not count). `y` is `[N, 3, S, S]`, `flows`
/// `[N, 2, S, S]` unit flows, `cellprob` and `weight` `[N, S, S]`.
pub fn cellpose_loss(
    y: &[f32],
    flows: &[f32],
    cellprob: &[f32],
    weight: &[f32],
    n: usize,
    plane: usize,
    flow_scale: f32,
) -> Loss {
    let wsum: f64 = weight.iter().map(|&w| f64::from(w)).sum::<f64>().max(1.0);
    let mut grad = vec![0.0f32; y.len()];
    let parts: Vec<(f64, f64)> = grad
        .par_chunks_mut(3 * plane)
        .enumerate()
        .map(|(i, g)| {
            let yi = &y[i * 3 * plane..(i + 1) * 3 * plane];
            let fi = &flows[i * 2 * plane..(i + 1) * 2 * plane];
            let ci = &cellprob[i * plane..(i + 1) * plane];
            let wi = &weight[i * plane..(i + 1) * plane];
            let (mut lf, mut lc) = (0.0f64, 0.0f64);
            // MSE over 2 channels: mean over 2·wsum elements, halved
            let kf = (1.0 / (2.0 * wsum) / 2.0) as f32;
            for ch in 0..2 {
                for p in 0..plane {
                    let w = wi[p];
                    if w == 0.0 {
                        continue;
                    }
                    let d = yi[ch * plane + p] - flow_scale * fi[ch * plane + p];
                    lf += f64::from(w * d * d);
                    g[ch * plane + p] = 2.0 * w * d * kf;
                }
            }
            let kc = (1.0 / wsum) as f32;
            for p in 0..plane {
                let w = wi[p];
                if w == 0.0 {
                    continue;
                }
                let z = yi[2 * plane + p];
                let t = ci[p];
                // BCE with logits, stable: max(z,0) − z·t + log(1 + e^−|z|)
                let l = z.max(0.0) - z * t + (-z.abs()).exp().ln_1p();
                lc += f64::from(w * l);
                let s = 1.0 / (1.0 + (-z).exp());
                g[2 * plane + p] = w * (s - t) * kc;
            }
            (lf, lc)
        })
        .collect();
    debug_assert!(
        y.len() == 3 * n * plane
            && flows.len() == 2 * n * plane
            && cellprob.len() == n * plane
            && weight.len() == n * plane,
        "loss operands of inconsistent sizes"
    );
    let lf: f64 = parts.iter().map(|p| p.0).sum::<f64>() / (2.0 * wsum) / 2.0;
    let lc: f64 = parts.iter().map(|p| p.1).sum::<f64>() / wsum;
    Loss {
        value: lf + lc,
        flow: lf,
        cellprob: lc,
        grad,
    }
}

/// AdamW (PyTorch's `torch.optim.AdamW`: decoupled weight decay, bias-corrected moments).
#[derive(Debug, Clone)]
pub struct AdamW {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Weight decay (for parameters that decay).
    pub weight_decay: f64,
    /// Steps taken.
    pub t: u64,
    /// First moments, one per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    /// A fresh optimiser for parameters of these sizes.
    pub fn new(sizes: &[usize], weight_decay: f64) -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// One step with learning rate `lr`: `params[i]` by `grads[i]`; `decay[i]` says whether
    /// weight decay applies.
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[Vec<f32>], decay: &[bool], lr: f64) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let (b1, b2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32);
        for (i, p) in params.iter_mut().enumerate() {
            let shrink = if decay[i] {
                (1.0 - lr * self.weight_decay) as f32
            } else {
                1.0
            };
            let (m, v, g) = (&mut self.m[i], &mut self.v[i], &grads[i]);
            for (((x, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                *x *= shrink;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let denom = v.sqrt() / bc2_sqrt + eps;
                *x -= step_size * *m / denom;
            }
        }
    }
}

/// The recipe's schedule: linear warm-up over `warmup` steps, then cosine decay to 2 % of
/// `base` as `progress` (0 → 1 after the warm-up) runs out.
pub fn lr_at(step: usize, progress: f64, base: f64, warmup: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let p = progress.clamp(0.0, 1.0);
    base * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_gradient_matches_finite_differences() {
        let (n, plane) = (2, 5);
        let y: Vec<f32> = (0..n * 3 * plane)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let flows: Vec<f32> = (0..n * 2 * plane)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) / 4.0)
            .collect();
        let cp: Vec<f32> = (0..n * plane).map(|i| (i % 2) as f32).collect();
        let w: Vec<f32> = (0..n * plane)
            .map(|i| if i % 3 == 0 { 0.0 } else { 1.0 })
            .collect();
        let l = cellpose_loss(&y, &flows, &cp, &w, n, plane, 5.0);
        for i in 0..y.len() {
            let e = 1e-3f32;
            let (mut a, mut b) = (y.clone(), y.clone());
            a[i] += e;
            b[i] -= e;
            let fd = (cellpose_loss(&a, &flows, &cp, &w, n, plane, 5.0).value
                - cellpose_loss(&b, &flows, &cp, &w, n, plane, 5.0).value)
                / (2.0 * e as f64);
            assert!(
                (fd - l.grad[i] as f64).abs() < 1e-3,
                "{i}: {fd} {}",
                l.grad[i]
            );
        }
    }

    #[test]
    fn unweighted_loss_is_the_recipe_mean() {
        // one pixel, flows 0, logit 0, target 1: MSE term (y-0)^2 mean /2, BCE = ln 2
        let l = cellpose_loss(&[1.0, 3.0, 0.0], &[0.0, 0.0], &[1.0], &[1.0], 1, 1, 5.0);
        assert!((l.flow - (1.0 + 9.0) / 2.0 / 2.0).abs() < 1e-9);
        assert!((l.cellprob - 2f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn adamw_first_step_moves_by_lr() {
        let mut p = [1.0f32, -1.0];
        let mut opt = AdamW::new(&[2], 0.0);
        opt.step(&mut [&mut p[..]], &[vec![0.5, -2.0]], &[false], 0.1);
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] + 0.9).abs() < 1e-6);
        assert!((lr_at(0, 0.0, 1.0, 10) - 0.1).abs() < 1e-12);
        assert!((lr_at(50, 1.0, 1.0, 10) - 0.02).abs() < 1e-12);
    }
}
