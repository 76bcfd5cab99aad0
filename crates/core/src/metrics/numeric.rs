//! Floating-point helpers that reproduce NumPy's arithmetic bit for bit.

/// `np.sum` of a contiguous float32 array: the reduction starts at 0 and adds NumPy's pairwise
/// sum (blocks of 128, eight accumulators), all in float32.
pub(crate) fn numpy_sum_f32(a: &[f32]) -> f32 {
    0.0f32 + pairwise_f32(a)
}

fn pairwise_f32(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        let mut res = -0.0f32;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0f32; 8];
        r.copy_from_slice(&a[..8]);
        let end = n - n % 8;
        let mut i = 8;
        while i < end {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[end..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_f32(&a[..n2]) + pairwise_f32(&a[n2..])
    }
}

/// Scale of the fixed-point costs used by the sparse assignment solver (2^90).
const FIXED_SCALE: f64 = 1237940039285380274899124224.0;

/// A float64 cost as an exact fixed-point integer (multiples of 2^-90; every cost the metrics
/// produce for images under 2^32 pixels is such a multiple, so sums and comparisons are exact).
pub(crate) fn fixed(x: f64) -> i128 {
    (x * FIXED_SCALE).round() as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_matches_known_values() {
        assert_eq!(numpy_sum_f32(&[]), 0.0);
        assert_eq!(numpy_sum_f32(&[0.5, 0.25]), 0.75);
        // Sequential float32 summation would give a different result here.
        let a: Vec<f32> = (0..300).map(|k| 1.0 + (k as f32) * 1e-3).collect();
        let seq = a.iter().fold(0.0f32, |s, &x| s + x);
        let pw = numpy_sum_f32(&a);
        assert!((pw - seq).abs() < 1e-2);
        assert_eq!(FIXED_SCALE, 2f64.powi(90));
        assert_eq!(fixed(-1.0), -(1i128 << 90));
    }
}
