//! Padding, tiling and tile blending as Cellpose 4's `run_net` (`transforms.get_pad_yx`,
//! `make_tiles`, `average_tiles`, `_taper_mask`), and the tiled network run that uses them.

use std::borrow::Cow;

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

/// A source of same-sized planes for [`super::Model::run_tiled_planes`]: plane `i` as
/// `c_in × h × w` float32, row-major.
pub(super) type PlaneSource<'a> = &'a dyn Fn(usize) -> Result<Cow<'a, [f32]>>;

/// The tile grid of a `h × w` plane: padding, tile size and starts, as Cellpose's `run_net`.
pub(super) struct Grid {
    h: usize,
    w: usize,
    py0: usize,
    px0: usize,
    ph: usize,
    pw: usize,
    ty: usize,
    tx: usize,
    ys: Vec<usize>,
    xs: Vec<usize>,
}

impl Grid {
    /// The grid for the model's (or the parameters') tile size and overlap.
    pub(super) fn new(
        model: &super::Model,
        h: usize,
        w: usize,
        params: &SegmentParams,
    ) -> Result<Grid> {
        let multiple = model.manifest.input.size_multiple;
        let tile = params.tile_size.unwrap_or(model.manifest.tiling.tile_size);
        if tile < multiple || !tile.is_multiple_of(multiple) || tile > 4096 {
            return Err(Error::invalid(format!(
                "tile size {tile} must be a multiple of {multiple} between {multiple} and 4096"
            )));
        }
        let overlap = params.tile_overlap.unwrap_or(model.manifest.tiling.overlap);
        if !overlap.is_finite() {
            return Err(Error::invalid("tile overlap must be finite"));
        }
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
        Ok(Grid {
            h,
            w,
            py0,
            px0,
            ph,
            pw,
            ty,
            tx,
            ys,
            xs,
        })
    }

    /// Tiles per plane.
    pub(super) fn tiles(&self) -> usize {
        self.ys.len() * self.xs.len()
    }

    /// Divides a plane's accumulator (`3 × ph × pw`) by the summed blending weights and crops
    /// the padding, compacting in place channel by channel (each destination index is at most
    /// its source index, and earlier channels are finished before their region is reused);
    /// the result is the first `3 × h × w` values.
    fn finish(&self, yf: &mut [f32], mask: &[f64]) {
        let (h, w, ph, pw) = (self.h, self.w, self.ph, self.pw);
        let plane = h * w;
        let cover = |starts: &[usize], size: usize, p: usize| -> std::ops::Range<usize> {
            let first = starts
                .iter()
                .position(|&s| p < s + size)
                .unwrap_or(starts.len());
            let end = starts.iter().position(|&s| s > p).unwrap_or(starts.len());
            first..end.max(first)
        };
        let cols: Vec<std::ops::Range<usize>> = (0..w)
            .map(|x| cover(&self.xs, self.tx, x + self.px0))
            .collect();
        let mut navg = vec![0.0f64; w];
        for ch in 0..3 {
            for y in 0..h {
                let py = y + self.py0;
                let rows = cover(&self.ys, self.ty, py);
                for (x, nv) in navg.iter_mut().enumerate() {
                    let px = x + self.px0;
                    // Same tiles, same order (row of tiles, then column) as the accumulation.
                    let mut sum = 0.0f64;
                    for j in rows.clone() {
                        for i in cols[x].clone() {
                            sum += mask[(py - self.ys[j]) * self.tx + (px - self.xs[i])];
                        }
                    }
                    *nv = sum;
                }
                for (x, nv) in navg.iter().enumerate() {
                    let i = ch * ph * pw + py * pw + x + self.px0;
                    yf[ch * plane + y * w + x] = (yf[i] as f64 / nv) as f32;
                }
            }
        }
    }
}

impl super::Model {
    /// Pads, tiles, runs and blends one plane as Cellpose's `run_net`; returns `(3, h, w)`.
    pub(super) fn run_tiled(
        &self,
        data: &[f32],
        h: usize,
        w: usize,
        params: &SegmentParams,
        progress: Option<&dyn Fn(Progress) -> bool>,
    ) -> Result<Vec<f32>> {
        let grid = Grid::new(self, h, w, params)?;
        let mut out = Vec::new();
        let source = |_: usize| Ok(Cow::Borrowed(data));
        let mut sink = |_: usize, mut y: Vec<f32>| {
            y.truncate(3 * h * w);
            y.shrink_to_fit();
            out = y;
            Ok(())
        };
        self.run_tiled_planes(
            &grid,
            1,
            &source,
            &mut sink,
            params,
            (0, grid.tiles()),
            progress,
        )?;
        Ok(out)
    }

    /// Runs `planes` same-sized planes (from `source`) through the network as Cellpose's
    /// `run_net` runs a stack: `max(1, batch_size / tiles per plane)` planes at a time, their
    /// tiles in network batches of `batch_size`, each plane blended and cropped, then handed to
    /// `sink` as a buffer whose first `3 × h × w` values are its dY, dX, cellprob.
    /// `done_total` places these tiles in a longer run for `progress`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_tiled_planes(
        &self,
        grid: &Grid,
        planes: usize,
        source: PlaneSource<'_>,
        sink: &mut dyn FnMut(usize, Vec<f32>) -> Result<()>,
        params: &SegmentParams,
        done_total: (usize, usize),
        progress: Option<&dyn Fn(Progress) -> bool>,
    ) -> Result<()> {
        let c_in = self.manifest.input.channels;
        let g = grid;
        let (h, w, ph, pw, ty, tx) = (g.h, g.w, g.ph, g.pw, g.ty, g.tx);
        let mask = taper_mask(ty, tx);
        let tiles: Vec<(usize, usize)> =
            g.ys.iter()
                .flat_map(|&y| g.xs.iter().map(move |&x| (y, x)))
                .collect();
        let ntiles = tiles.len();
        let batch = params.batch_size.max(1);
        let per_group = (batch / ntiles).max(1);
        let plane = h * w;
        let tsz = ty * tx;
        let (mut done, total) = done_total;
        // A batch larger than the tiles would only allocate unused input (any size_t comes
        // through the C API).
        let batch = batch.min((per_group * ntiles).min(planes * ntiles).max(1));
        let mut input = vec![0.0f32; batch * c_in * tsz];
        for first in (0..planes).step_by(per_group) {
            let group: Vec<usize> = (first..planes.min(first + per_group)).collect();
            let data: Vec<Cow<'_, [f32]>> =
                group.iter().map(|&i| source(i)).collect::<Result<_>>()?;
            // Accumulators over the padded planes, float32 as Cellpose's. The blending
            // weights' float64 sum is recomputed per pixel at the end (same tiles, same order)
            // instead of being stored, which saves 8 bytes per pixel on large images.
            let mut acc: Vec<Vec<f32>> = group.iter().map(|_| vec![0.0f32; 3 * ph * pw]).collect();
            let jobs: Vec<(usize, usize, usize)> = (0..group.len())
                .flat_map(|k| tiles.iter().map(move |&(y, x)| (k, y, x)))
                .collect();
            for chunk in jobs.chunks(batch) {
                let nb = chunk.len();
                input[..nb * c_in * tsz].fill(0.0);
                for (k, &(p, y0, x0)) in chunk.iter().enumerate() {
                    let src = &data[p];
                    for c in 0..c_in {
                        let dst = &mut input[(k * c_in + c) * tsz..(k * c_in + c + 1) * tsz];
                        for r in 0..ty {
                            let py = y0 + r;
                            if py < g.py0 || py >= g.py0 + h {
                                continue;
                            }
                            let sy = py - g.py0;
                            for q in 0..tx {
                                let px = x0 + q;
                                if px >= g.px0 && px < g.px0 + w {
                                    dst[r * tx + q] = src[c * plane + sy * w + (px - g.px0)];
                                }
                            }
                        }
                    }
                }
                let view = ArrayView4::from_shape((nb, c_in, ty, tx), &input[..nb * c_in * tsz])
                    .map_err(|e| Error::invalid(e.to_string()))?;
                let out = self.run_network(view)?;
                for (k, &(p, y0, x0)) in chunk.iter().enumerate() {
                    for ch in 0..3 {
                        let src = &out[(k * 3 + ch) * tsz..(k * 3 + ch + 1) * tsz];
                        let acc = &mut acc[p][ch * ph * pw..(ch + 1) * ph * pw];
                        for r in 0..ty {
                            let row = (y0 + r) * pw + x0;
                            for q in 0..tx {
                                let a = &mut acc[row + q];
                                *a = (*a as f64 + src[r * tx + q] as f64 * mask[r * tx + q]) as f32;
                            }
                        }
                    }
                }
                done += nb;
                if let Some(cb) = progress
                    && !cb(Progress {
                        tiles_done: done.min(total),
                        tiles_total: total,
                    })
                {
                    return Err(Error::Cancelled);
                }
            }
            drop(data);
            for (&i, mut yf) in group.iter().zip(acc) {
                g.finish(&mut yf, &mask);
                sink(i, yf)?;
            }
        }
        Ok(())
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
