//! Image preparation as Cellpose 4 does it: per-channel percentile normalization (numpy's
//! linear percentile, float32) and bilinear resizing (OpenCV's `INTER_LINEAR` on float32).

use crate::error::{Error, Result};

/// Cellpose computes percentiles on a strided subsample above this many pixels (224³).
const DOWNSAMPLE_ABOVE: usize = 224 * 224 * 224;

/// `np.percentile(values, q)` with the default "linear" method on float32 data, reproducing
/// numpy 2's arithmetic (float64 index, float32 interpolation). Reorders `values`.
pub fn percentile_f32(values: &mut [f32], q: f64) -> f32 {
    let n = values.len();
    debug_assert!(n > 0);
    let qf = q / 100.0;
    let virtual_index = (n as f64 * qf + (1.0 + -qf)) - 1.0;
    let (prev, next) = if virtual_index >= (n - 1) as f64 {
        (n - 1, n - 1)
    } else if virtual_index < 0.0 {
        (0, 0)
    } else {
        let p = virtual_index.floor() as usize;
        (p, p + 1)
    };
    let gamma = virtual_index - virtual_index.floor().max(0.0);
    let cmp = |a: &f32, b: &f32| a.total_cmp(b);
    let (_, a, rest) = values.select_nth_unstable_by(prev, cmp);
    let a = *a;
    let b = if next == prev {
        a
    } else {
        // The next order statistic is the minimum of the upper part.
        rest.iter().copied().min_by(cmp).unwrap_or(a)
    };
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * ((1.0 - gamma) as f32)
    } else {
        a + diff * (gamma as f32)
    }
}

/// Cellpose's `normalize99` on one channel plane (row-major `height × width`), in place:
/// `(x - p_low) / (p_high - p_low)` in float32, or all zeros when the range is under 1e-3.
/// Channels with no range at all (`ptp == 0`) are left unchanged and reported as `false`, as
/// `normalize_img` skips them.
pub fn normalize99(plane: &mut [f32], height: usize, width: usize, low: f64, high: f64) -> bool {
    normalize99_volume(plane, 1, height, width, low, high)
}

/// Cellpose's `normalize99` on one channel of a whole stack (`depth` planes of
/// `height × width`, plane after plane), in place: the percentiles of the whole volume, as
/// `normalize_img(..., norm3D=True)` computes them for Cellpose's stitching and 3-D modes.
/// Past 224³ values the percentiles come from every `depth/50`-th plane, `height/224`-th row
/// and `width/224`-th column (at least every one), as Cellpose's `downsample`. `depth` 1 is
/// [`normalize99`].
pub fn normalize99_volume(
    data: &mut [f32],
    depth: usize,
    height: usize,
    width: usize,
    low: f64,
    high: f64,
) -> bool {
    let (min, max) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = max - min;
    if range.is_nan() || range <= 0.0 {
        return false;
    }
    let mut sample: Vec<f32> = if data.len() > DOWNSAMPLE_ABOVE {
        let sz = if depth > 1 { (depth / 50).max(1) } else { 1 };
        let sy = (height / 224).max(1);
        let sx = (width / 224).max(1);
        (0..depth)
            .step_by(sz)
            .flat_map(|z| {
                (0..height)
                    .step_by(sy)
                    .flat_map(move |y| (0..width).step_by(sx).map(move |x| (z, y, x)))
            })
            .map(|(z, y, x)| data[(z * height + y) * width + x])
            .collect()
    } else {
        data.to_vec()
    };
    let lo = percentile_f32(&mut sample, low);
    let hi = percentile_f32(&mut sample, high);
    if hi - lo > 1e-3f32 {
        let range = hi - lo;
        for v in data.iter_mut() {
            *v = (*v - lo) / range;
        }
    } else {
        data.fill(0.0);
    }
    true
}

/// One axis of OpenCV's `INTER_LINEAR` resize on float data: for each output index the source
/// index and the weight of the next source sample. As OpenCV 5 computes it: the source position
/// `(d + 0.5) * (src / dst) - 0.5` and its fraction in float64, the fraction rounded to float32,
/// both clamped at the borders.
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, f32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let s = f.floor();
            if s < 0.0 {
                (0, 0.0)
            } else if s >= (src - 1) as f64 {
                (src - 1, 0.0)
            } else {
                (s as usize, (f - s) as f32)
            }
        })
        .collect()
}

/// OpenCV 5's interpolation step: `a + (b - a) * t` with one fused multiply-add.
#[inline(always)]
fn lerp(a: f32, b: f32, t: f32) -> f32 {
    (b - a).mul_add(t, a)
}

/// Resizes planar float32 channels (`channels × height × width`, row-major) to
/// `new_height × new_width` with OpenCV's float `INTER_LINEAR` (horizontal pass, then vertical),
/// bit for bit with `cv2.resize` of opencv-python 5.0.
pub fn resize_linear(
    data: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    new_height: usize,
    new_width: usize,
) -> Result<Vec<f32>> {
    if new_height == 0 || new_width == 0 {
        return Err(Error::invalid(format!(
            "resizing {height}×{width} would give an empty image ({new_height}×{new_width}): the diameter is too large for this image"
        )));
    }
    let tx = linear_taps(width, new_width);
    let ty = linear_taps(height, new_height);
    let mut out = vec![0.0f32; channels * new_height * new_width];
    let mut rows: Vec<f32> = vec![0.0; height * new_width];
    for c in 0..channels {
        let plane = &data[c * height * width..(c + 1) * height * width];
        for y in 0..height {
            let src = &plane[y * width..(y + 1) * width];
            let dst = &mut rows[y * new_width..(y + 1) * new_width];
            for (d, &(s, t)) in dst.iter_mut().zip(&tx) {
                *d = lerp(src[s], src[(s + 1).min(width - 1)], t);
            }
        }
        let o = &mut out[c * new_height * new_width..(c + 1) * new_height * new_width];
        for (y, &(s, t)) in ty.iter().enumerate() {
            let s1 = (s + 1).min(height - 1);
            let (r0, r1) = (
                &rows[s * new_width..(s + 1) * new_width],
                &rows[s1 * new_width..(s1 + 1) * new_width],
            );
            let dst = &mut o[y * new_width..(y + 1) * new_width];
            for ((d, &a), &b) in dst.iter_mut().zip(r0).zip(r1) {
                *d = lerp(a, b, t);
            }
        }
    }
    Ok(out)
}

/// Resizes planar float32 channels of a volume (`channels × depth × height × width`,
/// row-major) to `new_depth × new_height × new_width` as Cellpose's `resize_image_3d`: each
/// plane with [`resize_linear`] when its height or width changes, then along z with OpenCV's
/// float `INTER_LINEAR` (the vertical pass of resizing every `depth × width` slice, whose
/// horizontal pass is the identity) when the depth changes.
#[allow(clippy::too_many_arguments)]
pub fn resize_volume(
    data: Vec<f32>,
    channels: usize,
    depth: usize,
    height: usize,
    width: usize,
    new_depth: usize,
    new_height: usize,
    new_width: usize,
) -> Result<Vec<f32>> {
    let mut data = data;
    if new_height != height || new_width != width {
        data = resize_linear(
            &data,
            channels * depth,
            height,
            width,
            new_height,
            new_width,
        )?;
    }
    if new_depth == depth {
        return Ok(data);
    }
    if new_depth == 0 {
        return Err(Error::invalid(format!(
            "resizing {depth} planes would leave none"
        )));
    }
    let plane = new_height * new_width;
    let taps = linear_taps(depth, new_depth);
    let mut out = vec![0.0f32; channels * new_depth * plane];
    for c in 0..channels {
        let src = &data[c * depth * plane..(c + 1) * depth * plane];
        let dst = &mut out[c * new_depth * plane..(c + 1) * new_depth * plane];
        for (z, &(s, t)) in taps.iter().enumerate() {
            let s1 = (s + 1).min(depth - 1);
            let (p0, p1) = (
                &src[s * plane..(s + 1) * plane],
                &src[s1 * plane..(s1 + 1) * plane],
            );
            for ((d, &a), &b) in dst[z * plane..(z + 1) * plane].iter_mut().zip(p0).zip(p1) {
                *d = lerp(a, b, t);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear_examples() {
        // np.percentile(np.arange(10, dtype=np.float32), [1, 99]) == [0.09, 8.91]
        let mut v: Vec<f32> = (0..10).map(|i| i as f32).collect();
        assert_eq!(percentile_f32(&mut v, 1.0), 0.09f32);
        assert_eq!(percentile_f32(&mut v, 99.0), 8.91f32);
        let mut one = vec![3.0f32];
        assert_eq!(percentile_f32(&mut one, 99.0), 3.0);
    }

    #[test]
    fn constant_plane_is_left_alone() {
        let mut p = vec![5.0f32; 12];
        assert!(!normalize99(&mut p, 3, 4, 1.0, 99.0));
        assert!(p.iter().all(|&v| v == 5.0));
    }
}
