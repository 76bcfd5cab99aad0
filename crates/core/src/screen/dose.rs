//! Dose-response: a four-parameter logistic fitted per treatment to a per-well value against
//! the plate map's concentrations, with a plot.
//!
//! Model: y = bottom + (top − bottom) / (1 + (EC50 / x)^hill), x the concentration (> 0). Fitted
//! by least squares with Nelder–Mead over (bottom, top, log10 EC50, hill), started from the
//! data (bottom and top at the smallest and largest values, EC50 at the median concentration,
//! hill ±1 by the sign of the trend), restarted once from the first optimum, inside a box (EC50
//! within two decades of the tested concentrations, |hill| ≤ 10, asymptotes within one data
//! range beyond the values) so that data without a trend cannot send it off. Reported with R²;
//! a treatment with fewer than 4 distinct concentrations is not fitted (4 parameters).

use std::fmt::Write as _;

/// A fitted curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Logistic4 {
    /// Response at zero concentration (the curve's left asymptote).
    pub bottom: f64,
    /// Response at infinite concentration (the right asymptote).
    pub top: f64,
    /// Concentration of the half-way response.
    pub ec50: f64,
    /// Slope (Hill coefficient); its sign says which way the response goes.
    pub hill: f64,
}

impl Logistic4 {
    /// The curve at concentration `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.bottom + (self.top - self.bottom) / (1.0 + (self.ec50 / x).powf(self.hill))
    }
}

/// The fit of one treatment.
#[derive(Debug, Clone)]
pub struct DoseFit {
    /// The treatment.
    pub treatment: String,
    /// `(concentration, value)` of its wells.
    pub points: Vec<(f64, f64)>,
    /// The curve, when there were enough concentrations.
    pub curve: Option<Logistic4>,
    /// Coefficient of determination of the curve.
    pub r2: f64,
}

/// The box a fit stays in: EC50 within two decades of the tested concentrations, |hill| ≤ 10,
/// the asymptotes within one data range beyond the values (outside it, flat data would let
/// them run off).
struct Bounds {
    log_ec50: (f64, f64),
    level: (f64, f64),
}

fn sse(p: &[f64; 4], pts: &[(f64, f64)], b: &Bounds) -> f64 {
    let inside = |v: f64, (lo, hi): (f64, f64)| v >= lo && v <= hi;
    if !inside(p[2], b.log_ec50)
        || !inside(p[0], b.level)
        || !inside(p[1], b.level)
        || p[3].abs() > 10.0
    {
        return f64::INFINITY;
    }
    let c = Logistic4 {
        bottom: p[0],
        top: p[1],
        ec50: 10f64.powf(p[2]),
        hill: p[3],
    };
    pts.iter().map(|&(x, y)| (c.at(x) - y).powi(2)).sum()
}

/// Nelder–Mead (standard coefficients) from `start` with initial steps `step`.
fn nelder_mead(start: [f64; 4], step: [f64; 4], f: &dyn Fn(&[f64; 4]) -> f64) -> [f64; 4] {
    let mut simplex: Vec<([f64; 4], f64)> = (0..5)
        .map(|i| {
            let mut p = start;
            if i > 0 {
                p[i - 1] += step[i - 1];
            }
            (p, f(&p))
        })
        .collect();
    for _ in 0..4000 {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let spread = simplex[4].1 - simplex[0].1;
        if spread.abs() <= 1e-12 * (1.0 + simplex[0].1.abs()) {
            break;
        }
        let mut centroid = [0.0; 4];
        for (p, _) in &simplex[..4] {
            for k in 0..4 {
                centroid[k] += p[k] / 4.0;
            }
        }
        let towards = |t: f64| {
            let mut q = [0.0; 4];
            for k in 0..4 {
                q[k] = centroid[k] + t * (simplex[4].0[k] - centroid[k]);
            }
            q
        };
        let r = towards(-1.0);
        let fr = f(&r);
        if fr < simplex[0].1 {
            let e = towards(-2.0);
            let fe = f(&e);
            simplex[4] = if fe < fr { (e, fe) } else { (r, fr) };
        } else if fr < simplex[3].1 {
            simplex[4] = (r, fr);
        } else {
            let c = if fr < simplex[4].1 {
                towards(-0.5)
            } else {
                towards(0.5)
            };
            let fc = f(&c);
            if fc < simplex[4].1.min(fr) {
                simplex[4] = (c, fc);
            } else {
                let best = simplex[0].0;
                for s in simplex.iter_mut().skip(1) {
                    for (v, b) in s.0.iter_mut().zip(best) {
                        *v = b + 0.5 * (*v - b);
                    }
                    s.1 = f(&s.0);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex[0].0
}

/// Fits the four-parameter logistic to `(concentration, value)` points (concentrations ≤ 0 or
/// non-finite values are left out); `None` under 4 distinct concentrations.
pub fn fit(points: &[(f64, f64)]) -> Option<(Logistic4, f64)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, y)| x > 0.0 && x.is_finite() && y.is_finite())
        .collect();
    let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.len() < 4 {
        return None;
    }
    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    // Trend: the mean of the upper half of the concentrations against the lower half.
    let mid = xs[xs.len() / 2];
    let mean = |f: &dyn Fn(f64) -> bool| {
        let v: Vec<f64> = pts.iter().filter(|p| f(p.0)).map(|p| p.1).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let rising = mean(&|x| x >= mid) >= mean(&|x| x < mid);
    let (bottom, top) = if rising { (lo, hi) } else { (hi, lo) };
    let span = (hi - lo).abs().max(1e-9);
    let start = [bottom, top, mid.log10(), 1.0];
    let step = [0.1 * span, 0.1 * span, 0.5, 0.5];
    let bounds = Bounds {
        log_ec50: (xs[0].log10() - 2.0, xs[xs.len() - 1].log10() + 2.0),
        level: (lo - span, hi + span),
    };
    let f = |p: &[f64; 4]| sse(p, &pts, &bounds);
    let p = nelder_mead(start, step, &f);
    let p = nelder_mead(p, step, &f);
    let curve = Logistic4 {
        bottom: p[0],
        top: p[1],
        ec50: 10f64.powf(p[2]),
        hill: p[3],
    };
    let my = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
    let sst: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let r2 = if sst > 0.0 {
        1.0 - f(&p) / sst
    } else {
        f64::NAN
    };
    Some((curve, r2))
}

/// A dose-response plot (SVG): each treatment's wells as dots and its fitted curve, against the
/// concentration on a log axis; controls (concentration 0) as a dashed line at their mean.
pub fn plot_svg(title: &str, value: &str, fits: &[DoseFit], control_mean: Option<f64>) -> String {
    const COLOURS: [&str; 6] = [
        "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377",
    ];
    let (w, h, l, r, t, b) = (640.0, 400.0, 64.0, 170.0, 40.0, 48.0);
    let xs: Vec<f64> = fits
        .iter()
        .flat_map(|f| f.points.iter().map(|p| p.0))
        .filter(|&x| x > 0.0)
        .collect();
    let mut ys: Vec<f64> = fits
        .iter()
        .flat_map(|f| f.points.iter().map(|p| p.1))
        .collect();
    ys.extend(control_mean);
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min).log10() - 0.3,
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max).log10() + 0.3,
    );
    let (mut y0, mut y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if y1 <= y0 || !y1.is_finite() || !y0.is_finite() {
        y0 = if y0.is_finite() { y0 } else { 0.0 };
        y1 = y0;
        y0 -= 1.0;
        y1 += 1.0;
    }
    let pad = 0.08 * (y1 - y0);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let px = |x: f64| l + (x.log10() - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| t + (y1 - y) / (y1 - y0) * (h - t - b);
    let esc = crate::report_util::esc;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{l}\" y=\"22\" font-size=\"14\" font-weight=\"600\">{}</text>\
         <line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/><line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"#444\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">concentration (log scale)</text>\
         <text x=\"14\" y=\"{}\" font-size=\"11\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>",
        esc(title),
        h - b,
        w - r,
        h - b,
        h - b,
        (l + w - r) / 2.0,
        h - 12.0,
        (t + h - b) / 2.0,
        (t + h - b) / 2.0,
        esc(value)
    );
    for d in (x0.ceil() as i32)..=(x1.floor() as i32) {
        let x = px(10f64.powi(d));
        let _ = write!(
            s,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#444\"/><text x=\"{x}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">1e{d}</text>",
            h - b,
            h - b + 4.0,
            h - b + 16.0
        );
    }
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * k as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{:.3}</text>",
            l - 4.0,
            py(y) + 3.0,
            y
        );
    }
    if let Some(c) = control_mean.filter(|c| c.is_finite()) {
        let _ = write!(
            s,
            "<line x1=\"{l}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\" stroke-dasharray=\"5,4\"/><text x=\"{2}\" y=\"{3}\" font-size=\"10\" fill=\"#666\">controls</text>",
            py(c),
            w - r,
            w - r + 4.0,
            py(c) + 3.0
        );
    }
    for (i, f) in fits.iter().enumerate() {
        let col = COLOURS[i % COLOURS.len()];
        if let Some(c) = f.curve {
            let mut d = String::new();
            for k in 0..=100 {
                let lx = x0 + (x1 - x0) * k as f64 / 100.0;
                let y = c.at(10f64.powf(lx)).clamp(y0, y1);
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if k == 0 { "M" } else { " L" },
                    px(10f64.powf(lx)),
                    py(y)
                );
            }
            let _ = write!(
                s,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"/>"
            );
        }
        for &(x, y) in f.points.iter().filter(|p| p.0 > 0.0) {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{col}\"><title>{}: {x} → {y}</title></circle>",
                px(x),
                py(y),
                esc(&f.treatment)
            );
        }
        let label = match f.curve {
            Some(c) => format!("{} (EC50 {:.3}, R² {:.2})", f.treatment, c.ec50, f.r2),
            None => format!("{} (not fitted)", f.treatment),
        };
        let ly = t + 16.0 * i as f64 + 8.0;
        let _ = write!(
            s,
            "<circle cx=\"{}\" cy=\"{ly}\" r=\"4\" fill=\"{col}\"/><text x=\"{}\" y=\"{}\" font-size=\"10\">{}</text>",
            w - r + 12.0,
            w - r + 20.0,
            ly + 3.0,
            esc(&label)
        );
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_curve() {
        let truth = Logistic4 {
            bottom: 40.0,
            top: 5.0,
            ec50: 0.3,
            hill: 1.5,
        };
        let xs = [0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0];
        let mut pts = Vec::new();
        for (i, &x) in xs.iter().enumerate() {
            // Replicates with a small deterministic wobble.
            for k in [-1.0, 1.0] {
                pts.push((x, truth.at(x) + 0.2 * k * ((i % 3) as f64 - 1.0)));
            }
        }
        let (c, r2) = fit(&pts).unwrap();
        assert!((c.ec50 / truth.ec50 - 1.0).abs() < 0.05, "{c:?}");
        assert!(
            (c.hill - 1.5).abs() < 0.15
                && (c.bottom - 40.0).abs() < 0.5
                && (c.top - 5.0).abs() < 0.5,
            "{c:?}"
        );
        assert!(r2 > 0.999, "{r2}");
        assert!(fit(&pts[..6]).is_none(), "3 concentrations are too few");
        let svg = plot_svg(
            "objects per field",
            "objects per field",
            &[DoseFit {
                treatment: "x".into(),
                points: pts,
                curve: Some(c),
                r2,
            }],
            Some(41.0),
        );
        assert!(svg.contains("EC50 0.3") && svg.contains("<path"));
    }
}
