//! Padding, tiling and tile blending as Cellpose 4's `run_net` (`transforms.get_pad_yx`,
//! `make_tiles`, `average_tiles`, `_taper_mask`), and the tiled network run that uses them.

use ndarray::ArrayView4;

use crate::error::{Error, Result};

use super::{Progress, SegmentParams};

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

impl super::Model {
    /// Pads, tiles, runs and blends as Cellpose's `run_net`; returns `(3, h, w)` planes.
    pub(super) fn run_tiled(
        &self,
        data: &[f32],
        h: usize,
        w: usize,
        params: &SegmentParams,
        progress: Option<&dyn Fn(Progress) -> bool>,
    ) -> Result<Vec<f32>> {
        let c_in = self.manifest.input.channels;
        let multiple = self.manifest.input.size_multiple;
        let tile = params.tile_size.unwrap_or(self.manifest.tiling.tile_size);
        if tile < multiple || !tile.is_multiple_of(multiple) || tile > 4096 {
            return Err(Error::invalid(format!(
                "tile size {tile} must be a multiple of {multiple} between {multiple} and 4096"
            )));
        }
        let overlap = params.tile_overlap.unwrap_or(self.manifest.tiling.overlap);
        if !overlap.is_finite() {
            return Err(Error::invalid("tile overlap must be finite"));
        }
        let batch = params.batch_size.max(1);
        let (py0, py1) = pad_1d(h, tile);
        let (px0, px1) = pad_1d(w, tile);
        let (ph, pw) = (h + py0 + py1, w + px0 + px1);
        let (ty, ys) = tile_starts(ph, tile, overlap);
        let (tx, xs) = tile_starts(pw, tile, overlap);
        if ty % multiple != 0 || tx % multiple != 0 {
            return Err(Error::invalid(format!(
                "tiles of {ty}×{tx} are not multiples of {multiple}"
            )));
        }
        let mask = taper_mask(ty, tx);
        let tiles: Vec<(usize, usize)> = ys
            .iter()
            .flat_map(|&y| xs.iter().map(move |&x| (y, x)))
            .collect();
        let total = tiles.len();
        // Accumulator over the padded image, float32 as Cellpose's. The blending weights'
        // float64 sum is recomputed per pixel at the end (same tiles, same order) instead of
        // being stored, which saves 8 bytes per pixel on large images.
        let mut yf = vec![0.0f32; 3 * ph * pw];
        let plane = h * w;
        let tsz = ty * tx;
        // A batch larger than the tiles would only allocate unused input (any size_t comes
        // through the C API).
        let batch = batch.min(total.max(1));
        let mut input = vec![0.0f32; batch * c_in * tsz];
        for (bi, chunk) in tiles.chunks(batch).enumerate() {
            let nb = chunk.len();
            input[..nb * c_in * tsz].fill(0.0);
            for (k, &(y0, x0)) in chunk.iter().enumerate() {
                for c in 0..c_in {
                    let dst = &mut input[(k * c_in + c) * tsz..(k * c_in + c + 1) * tsz];
                    for r in 0..ty {
                        let py = y0 + r;
                        if py < py0 || py >= py0 + h {
                            continue;
                        }
                        let sy = py - py0;
                        for q in 0..tx {
                            let px = x0 + q;
                            if px >= px0 && px < px0 + w {
                                dst[r * tx + q] = data[c * plane + sy * w + (px - px0)];
                            }
                        }
                    }
                }
            }
            let view = ArrayView4::from_shape((nb, c_in, ty, tx), &input[..nb * c_in * tsz])
                .map_err(|e| Error::invalid(e.to_string()))?;
            let out = self.run_network(view)?;
            for (k, &(y0, x0)) in chunk.iter().enumerate() {
                for ch in 0..3 {
                    let src = &out[(k * 3 + ch) * tsz..(k * 3 + ch + 1) * tsz];
                    let acc = &mut yf[ch * ph * pw..(ch + 1) * ph * pw];
                    for r in 0..ty {
                        let row = (y0 + r) * pw + x0;
                        for q in 0..tx {
                            let a = &mut acc[row + q];
                            *a = (*a as f64 + src[r * tx + q] as f64 * mask[r * tx + q]) as f32;
                        }
                    }
                }
            }
            if let Some(cb) = progress {
                let done = ((bi + 1) * batch).min(total);
                if !cb(Progress {
                    tiles_done: done,
                    tiles_total: total,
                }) {
                    return Err(Error::Cancelled);
                }
            }
        }
        // Divide by the summed weights and crop the padding, compacting in place channel by
        // channel (each destination index is at most its source index, and earlier channels
        // are finished before their region is reused).
        let cover = |starts: &[usize], size: usize, p: usize| -> std::ops::Range<usize> {
            let first = starts
                .iter()
                .position(|&s| p < s + size)
                .unwrap_or(starts.len());
            let end = starts.iter().position(|&s| s > p).unwrap_or(starts.len());
            first..end.max(first)
        };
        let cols: Vec<std::ops::Range<usize>> = (0..w).map(|x| cover(&xs, tx, x + px0)).collect();
        let mut navg = vec![0.0f64; w];
        for ch in 0..3 {
            for y in 0..h {
                let py = y + py0;
                let rows = cover(&ys, ty, py);
                for (x, nv) in navg.iter_mut().enumerate() {
                    let px = x + px0;
                    // Same tiles, same order (row of tiles, then column) as the accumulation.
                    let mut sum = 0.0f64;
                    for j in rows.clone() {
                        for i in cols[x].clone() {
                            sum += mask[(py - ys[j]) * tx + (px - xs[i])];
                        }
                    }
                    *nv = sum;
                }
                for (x, nv) in navg.iter().enumerate() {
                    let i = ch * ph * pw + py * pw + x + px0;
                    yf[ch * plane + y * w + x] = (yf[i] as f64 / nv) as f32;
                }
            }
        }
        yf.truncate(3 * plane);
        yf.shrink_to_fit();
        Ok(yf)
    }
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
