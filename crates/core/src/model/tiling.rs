//! Padding, tiling and tile blending as Cellpose 4's `run_net` (`transforms.get_pad_yx`,
//! `make_tiles`, `average_tiles`, `_taper_mask`).

/// Cellpose's padding: to a multiple of 16 plus 8 on each side, or up to the tile size for small
/// images (`get_pad_yx(L, div=16, extra=1, min_size=(bsize, bsize))`). Returns (before, after).
pub fn pad_1d(len: usize, tile: usize) -> (usize, usize) {
    const DIV: usize = 16;
    let lpad = if len >= tile {
        len.div_ceil(DIV) * DIV - len
    } else {
        tile.saturating_sub(len + DIV)
    };
    (DIV / 2 + lpad / 2, DIV / 2 + lpad - lpad / 2)
}

/// Tile starts along one axis of padded length `len` (`make_tiles` without augmentation):
/// returns the effective tile size and the starts.
pub fn tile_starts(len: usize, tile: usize, overlap: f64) -> (usize, Vec<usize>) {
    let overlap = overlap.clamp(0.05, 0.5);
    let size = tile.min(len);
    let n = if len <= tile {
        1
    } else {
        ((1.0 + 2.0 * overlap) * len as f64 / tile as f64).ceil() as usize
    };
    // np.linspace(0, len - size, n).astype(int)
    let stop = (len - size) as f64;
    let starts = if n == 1 {
        vec![0]
    } else {
        let step = stop / (n - 1) as f64;
        (0..n)
            .map(|i| {
                if i == n - 1 {
                    stop as usize
                } else {
                    (i as f64 * step) as usize
                }
            })
            .collect()
    };
    (size, starts)
}

/// Cellpose's taper mask for a `ly × lx` tile, row-major float64:
/// `m = 1 / (1 + exp((|i - mean| - (B/2 - 20)) / 7.5))` with `B = max(224, ly, lx)`, outer
/// product `m[a] * m[b]`, centre-cropped.
pub fn taper_mask(ly: usize, lx: usize) -> Vec<f64> {
    let b = 224.max(ly).max(lx);
    let mean = (b as f64 - 1.0) / 2.0;
    let m: Vec<f64> = (0..b)
        .map(|i| {
            let xm = (i as f64 - mean).abs();
            1.0 / (1.0 + ((xm - (b as f64 / 2.0 - 20.0)) / 7.5).exp())
        })
        .collect();
    let y0 = b / 2 - ly / 2;
    let x0 = b / 2 - lx / 2;
    let mut out = Vec::with_capacity(ly * lx);
    for a in 0..ly {
        for c in 0..lx {
            // numpy: mask * mask[:, newaxis] -> element [a, c] = m[c] * m[a]
            out.push(m[x0 + c] * m[y0 + a]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_matches_cellpose() {
        // get_pad_yx(300, ..., min_size=(256,256)): 16*ceil(300/16) - 300 = 4 -> (10, 10)
        assert_eq!(pad_1d(300, 256), (10, 10));
        // small image: max(0, 256 - 100 - 16) = 140 -> (78, 78)
        assert_eq!(pad_1d(100, 256), (78, 78));
        assert_eq!(pad_1d(256, 256), (8, 8));
    }

    #[test]
    fn tiles_cover_the_image() {
        let (size, starts) = tile_starts(600, 256, 0.1);
        assert_eq!(size, 256);
        assert_eq!(starts.first(), Some(&0));
        assert_eq!(starts.last(), Some(&(600 - 256)));
        assert_eq!(starts.len(), 3); // ceil(1.2 * 600 / 256) = 3
        assert_eq!(tile_starts(200, 256, 0.1), (200, vec![0]));
    }
}
