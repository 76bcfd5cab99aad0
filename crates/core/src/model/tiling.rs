//! Padding, tiling and tile blending as Cellpose 4's `run_net` (`transforms.get_pad_yx`,
//! `make_tiles`, `average_tiles`, `_taper_mask`), and the tiled network run that uses them.

use std::borrow::Cow;

use ndarray::ArrayView4;

use crate::error::{Error, Result};

use super::{Device, Progress, SegmentParams};

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

/// How an image is cut into network tiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tiling {
    /// As Cellpose 4's `run_net`: tiles of the model's size (256) with 10% overlap, small images
    /// padded up to a tile. The labels equal Cellpose's pipeline around the same network.
    Cellpose,
    /// Each image padded as Cellpose pads it (a multiple of 16 plus 8 pixels of context on
    /// each side, sides shorter than the model's tile up to that tile), then in as few tiles as
    /// possible: whole when it fits a [`FAST_TILE`]-pixel edge, else tiles of at most that edge
    /// overlapping by [`FAST_OVERLAP`] of it. The network sees up to 3.5× fewer pixels than
    /// with [`Tiling::Cellpose`], whose 256² tiles overlap by about 20%: 1.3-2× faster on 2-D
    /// images and 2-3× in 3-D as measured (README, "Tiling"), at the same accuracy in 2-D
    /// (slightly lower with do_3D); labels are close to but not identical with Cellpose's.
    #[default]
    Fast,
}

impl Tiling {
    /// Every mode, in the order the faces offer them (the default first).
    pub const ALL: [Tiling; 2] = [Tiling::Fast, Tiling::Cellpose];

    /// The mode's name as the faces write it: `fast` or `cellpose`.
    pub fn name(self) -> &'static str {
        match self {
            Tiling::Fast => "fast",
            Tiling::Cellpose => "cellpose",
        }
    }

    /// Parses a mode's name (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        Tiling::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown tiling {s:?}: use fast (default) or cellpose (Cellpose's tiles, for parity)"
                ))
            })
    }

    /// The tile size and overlap in use: the parameters' where given, else this mode's
    /// defaults (the model's for [`Tiling::Cellpose`]; [`FAST_TILE`] and [`FAST_OVERLAP`] for
    /// [`Tiling::Fast`]).
    pub fn tile_and_overlap(
        self,
        params: &SegmentParams,
        manifest: &super::Manifest,
    ) -> (usize, f64) {
        let (tile, overlap) = match self {
            Tiling::Cellpose => (manifest.tiling.tile_size, manifest.tiling.overlap),
            Tiling::Fast => (FAST_TILE, FAST_OVERLAP),
        };
        (
            params.tile_size.unwrap_or(tile),
            params.tile_overlap.unwrap_or(overlap),
        )
    }

    /// The mode's number in the C API and the Java and Python shims: its position in
    /// [`Tiling::ALL`] (0 fast, 1 cellpose).
    pub fn code(self) -> i32 {
        Tiling::ALL.iter().position(|&t| t == self).unwrap_or(0) as i32
    }

    /// The mode of a number given by the C API or the Java and Python shims (see
    /// [`Tiling::code`]); other values are an error naming `what`.
    pub fn from_code(code: i64, what: &str) -> Result<Self> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Tiling::ALL.get(i).copied())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{what} is {code}: use 0 (fast, the default) or 1 (cellpose)"
                ))
            })
    }
}

/// Largest tile edge of [`Tiling::Fast`] unless the tile size is given.
pub const FAST_TILE: usize = 1024;

/// Overlap of [`Tiling::Fast`]'s tiles, as a fraction of the largest tile edge, unless given.
pub const FAST_OVERLAP: f64 = 0.0625;

/// Tile starts of [`Tiling::Fast`] along one axis of padded length `len` (a multiple of
/// `multiple`): one tile when `len <= tile`, else the fewest tiles of at most `tile` (rounded
/// down to `multiple`) overlapping by at least `overlap × tile` pixels, all of one size (a
/// multiple of `multiple`), spread evenly from 0 to `len - size`.
pub fn fast_tile_starts(
    len: usize,
    tile: usize,
    overlap: f64,
    multiple: usize,
) -> (usize, Vec<usize>) {
    let tile = (tile / multiple * multiple).max(multiple);
    if len <= tile {
        return (len, vec![0]);
    }
    let ov = ((overlap.clamp(0.0, 0.5) * tile as f64).ceil() as usize).min(tile / 2);
    // n tiles of size s cover len with overlap >= ov when n * s - (n - 1) * ov >= len.
    let mut n = (len - ov).div_ceil(tile - ov);
    let size = loop {
        let s = (len + (n - 1) * ov).div_ceil(n).next_multiple_of(multiple);
        if s <= tile {
            break s;
        }
        n += 1;
    };
    let stop = len - size;
    let starts = (0..n)
        .map(|i| if n == 1 { 0 } else { i * stop / (n - 1) })
        .collect();
    (size, starts)
}

/// Blending weights of a `ly × lx` tile of [`Tiling::Fast`]: Cellpose's taper along each axis
/// that has several tiles (sized for that axis), 1 along an axis covered by one tile.
pub fn fast_taper_mask(ly: usize, lx: usize, tiled_y: bool, tiled_x: bool) -> Vec<f64> {
    let axis = |l: usize, tiled: bool| {
        if tiled {
            taper_axis(224.max(l), l)
        } else {
            vec![1.0; l]
        }
    };
    outer(&axis(ly, tiled_y), &axis(lx, tiled_x))
}

/// Cellpose's taper mask for a `ly × lx` tile, row-major float64:
/// `m = 1 / (1 + exp((|i - mean| - (B/2 - 20)) / 7.5))` with `B = max(224, ly, lx)`, outer
/// product `m[a] * m[b]`, centre-cropped.
pub fn taper_mask(ly: usize, lx: usize) -> Vec<f64> {
    let b = 224.max(ly).max(lx);
    outer(&taper_axis(b, ly), &taper_axis(b, lx))
}

/// The centre `l` values of Cellpose's 1-D taper of length `b`.
fn taper_axis(b: usize, l: usize) -> Vec<f64> {
    let mean = (b as f64 - 1.0) / 2.0;
    let off = b / 2 - l / 2;
    (off..off + l)
        .map(|i| {
            let xm = (i as f64 - mean).abs();
            1.0 / (1.0 + ((xm - (b as f64 / 2.0 - 20.0)) / 7.5).exp())
        })
        .collect()
}

/// Row-major `my ⊗ mx`, element `[a, c] = mx[c] * my[a]` (numpy's `mask * mask[:, newaxis]`).
fn outer(my: &[f64], mx: &[f64]) -> Vec<f64> {
    my.iter()
        .flat_map(|a| mx.iter().map(move |c| c * a))
        .collect()
}

/// A source of same-sized planes for [`super::Model::run_tiled_planes`]: plane `i` as
/// `c_in × h × w` float32, row-major.
pub(super) type PlaneSource<'a> = &'a dyn Fn(usize) -> Result<Cow<'a, [f32]>>;

/// The tile grid of a `h × w` plane: padding, tile size and starts, as Cellpose's `run_net`.
pub(super) struct Grid {
    tiling: Tiling,
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
    /// The grid for the parameters' tiling mode, tile size and overlap.
    pub(super) fn new(
        model: &super::Model,
        h: usize,
        w: usize,
        params: &SegmentParams,
    ) -> Result<Grid> {
        let multiple = model.manifest.input.size_multiple;
        let (tile, overlap) = params.tiling.tile_and_overlap(params, &model.manifest);
        if !overlap.is_finite() {
            return Err(Error::invalid("tile overlap must be finite"));
        }
        if tile < multiple || !tile.is_multiple_of(multiple) || tile > 4096 {
            return Err(Error::invalid(format!(
                "tile size {tile} must be a multiple of {multiple} between {multiple} and 4096"
            )));
        }
        let ((py0, py1), (px0, px1), (ty, ys), (tx, xs));
        match params.tiling {
            Tiling::Cellpose => {
                (py0, py1) = pad_1d(h, tile);
                (px0, px1) = pad_1d(w, tile);
                (ty, ys) = tile_starts(h + py0 + py1, tile, overlap);
                (tx, xs) = tile_starts(w + px0 + px1, tile, overlap);
            }
            Tiling::Fast => {
                // Cellpose's padding, small sides up to the model's tile: without it the
                // network's style vector is taken over little but the image, which costs
                // accuracy in 3-D (the short z planes of do_3D).
                (py0, py1) = pad_1d(h, model.manifest.tiling.tile_size);
                (px0, px1) = pad_1d(w, model.manifest.tiling.tile_size);
                (ty, ys) = fast_tile_starts(h + py0 + py1, tile, overlap, multiple);
                (tx, xs) = fast_tile_starts(w + px0 + px1, tile, overlap, multiple);
            }
        }
        let (ph, pw) = (h + py0 + py1, w + px0 + px1);
        if ty % multiple != 0 || tx % multiple != 0 {
            return Err(Error::invalid(format!(
                "tiles of {ty}×{tx} are not multiples of {multiple}"
            )));
        }
        Ok(Grid {
            tiling: params.tiling,
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
        let (precision, _) = self.precision_for(params)?;
        let g = grid;
        let (h, w, ph, pw, ty, tx) = (g.h, g.w, g.ph, g.pw, g.ty, g.tx);
        let mask = match g.tiling {
            Tiling::Cellpose => taper_mask(ty, tx),
            Tiling::Fast => fast_taper_mask(ty, tx, g.ys.len() > 1, g.xs.len() > 1),
        };
        let tiles: Vec<(usize, usize)> =
            g.ys.iter()
                .flat_map(|&y| g.xs.iter().map(move |&x| (y, x)))
                .collect();
        let ntiles = tiles.len();
        let batch = match g.tiling {
            Tiling::Cellpose => params.batch_size.max(1),
            // The batch is counted in tiles of the model's size: as many pixels per call.
            Tiling::Fast => {
                let t = self.manifest.tiling.tile_size;
                (params.batch_size.saturating_mul(t * t) / (ty * tx).max(1)).max(1)
            }
        };
        let per_group = (batch / ntiles).max(1);
        let plane = h * w;
        let tsz = ty * tx;
        let (mut done, total) = done_total;
        // A batch larger than the tiles would only allocate unused input (any size_t comes
        // through the C API).
        let batch = batch.min((per_group * ntiles).min(planes * ntiles).max(1));
        // On the CPU up to two network calls run at once (the model's session pool): batches
        // are filled and run in pairs, then accumulated in order, so the labels are those of
        // one call after the other.
        let pair = if self.device == Device::Cpu {
            super::CPU_SESSIONS
        } else {
            1
        };
        let mut inputs: Vec<Vec<f32>> = (0..pair).map(|_| Vec::new()).collect();
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
            let chunks: Vec<&[(usize, usize, usize)]> = jobs.chunks(batch).collect();
            for calls in chunks.chunks(pair) {
                for (chunk, input) in calls.iter().zip(inputs.iter_mut()) {
                    let nb = chunk.len();
                    input.clear();
                    input.resize(nb * c_in * tsz, 0.0);
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
                }
                let run = |chunk: &[(usize, usize, usize)], input: &[f32]| -> Result<Vec<f32>> {
                    let view = ArrayView4::from_shape((chunk.len(), c_in, ty, tx), input)
                        .map_err(|e| Error::invalid(e.to_string()))?;
                    self.run_network_at(view, precision)
                };
                let outs: Vec<Result<Vec<f32>>> = if calls.len() == 1 {
                    vec![run(calls[0], &inputs[0])]
                } else {
                    std::thread::scope(|s| {
                        let others: Vec<_> = calls[1..]
                            .iter()
                            .zip(&inputs[1..])
                            .map(|(chunk, input)| s.spawn(|| run(chunk, input)))
                            .collect();
                        let mut outs = vec![run(calls[0], &inputs[0])];
                        outs.extend(others.into_iter().map(|t| {
                            t.join().unwrap_or_else(|_| {
                                Err(Error::Runtime("a network call panicked".into()))
                            })
                        }));
                        outs
                    })
                };
                for (chunk, out) in calls.iter().zip(outs) {
                    let out = out?;
                    for (k, &(p, y0, x0)) in chunk.iter().enumerate() {
                        for ch in 0..3 {
                            let src = &out[(k * 3 + ch) * tsz..(k * 3 + ch + 1) * tsz];
                            let acc = &mut acc[p][ch * ph * pw..(ch + 1) * ph * pw];
                            for r in 0..ty {
                                let row = (y0 + r) * pw + x0;
                                for q in 0..tx {
                                    let a = &mut acc[row + q];
                                    *a = (*a as f64 + src[r * tx + q] as f64 * mask[r * tx + q])
                                        as f32;
                                }
                            }
                        }
                    }
                    done += chunk.len();
                    if let Some(cb) = progress
                        && !cb(Progress {
                            tiles_done: done.min(total),
                            tiles_total: total,
                        })
                    {
                        return Err(Error::Cancelled);
                    }
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

    #[test]
    fn fast_tiles_are_few_cover_the_image_and_overlap() {
        // Whole when the padded length fits a tile.
        assert_eq!(fast_tile_starts(272, 1024, 0.0625, 16), (272, vec![0]));
        assert_eq!(fast_tile_starts(1024, 1024, 0.0625, 16), (1024, vec![0]));
        for len in (16..=9000).step_by(16) {
            for (tile, overlap) in [(1024, 0.0625), (256, 0.1), (512, 0.0), (48, 0.5)] {
                let (size, starts) = fast_tile_starts(len, tile, overlap, 16);
                let ov = (overlap * tile as f64).ceil() as usize;
                assert!(
                    size % 16 == 0 && size <= tile.max(16) && size <= len,
                    "{len} {tile}"
                );
                assert_eq!(starts[0], 0);
                assert_eq!(
                    starts.last().unwrap() + size,
                    len,
                    "{len} {tile}: last tile ends"
                );
                for p in starts.windows(2) {
                    assert!(p[1] > p[0], "{len} {tile}: starts increase");
                    assert!(
                        p[0] + size >= p[1] + ov.min(tile / 2),
                        "{len} {tile}: overlap"
                    );
                }
                // No fewer tiles would do with tiles of at most `tile`.
                let n = starts.len();
                if n > 1 {
                    let ov = ov.min(tile / 2);
                    assert!(
                        (n - 1) * tile - (n - 2) * ov < len + 16,
                        "{len} {tile}: {n} tiles"
                    );
                }
            }
        }
        // Cellpose's tiling of a 1024² image (padded to 1040²) runs 25 tiles of 256²;
        // fast tiling one of 1040².
        assert_eq!(tile_starts(1040, 256, 0.1).1.len(), 5);
        assert_eq!(fast_tile_starts(1040, 1024, 0.0625, 16).1.len(), 2);
        assert_eq!(pad_1d(1024, 0), (8, 8));
    }

    #[test]
    fn fast_blending_weights_are_one_along_untiled_axes() {
        let m = fast_taper_mask(32, 48, false, false);
        assert!(m.iter().all(|&v| v == 1.0));
        // Tiled along x only: every row is Cellpose's 1-D taper of a 48-wide tile (a row of its
        // 48² mask divided by the weight of that row, m[k]² on the diagonal).
        let m = fast_taper_mask(3, 48, false, true);
        let cellpose = taper_mask(48, 48);
        let row = 24;
        let m_row = cellpose[row * 48 + row].sqrt();
        for r in 0..3 {
            for c in 0..48 {
                let want = cellpose[row * 48 + c] / m_row;
                assert!((m[r * 48 + c] - want).abs() < 1e-12, "{r} {c}");
            }
        }
        // Square tiles tiled both ways: Cellpose's mask.
        assert_eq!(fast_taper_mask(256, 256, true, true), taper_mask(256, 256));
    }

    #[test]
    fn tiling_names_and_codes() {
        for t in Tiling::ALL {
            assert_eq!(Tiling::parse(t.name()).unwrap(), t);
        }
        assert_eq!(Tiling::parse(" CellPose ").unwrap(), Tiling::Cellpose);
        assert!(Tiling::parse("slow").is_err());
        assert_eq!(Tiling::from_code(0, "t").unwrap(), Tiling::Fast);
        assert_eq!(Tiling::from_code(1, "t").unwrap(), Tiling::Cellpose);
        for t in Tiling::ALL {
            assert_eq!(Tiling::from_code(i64::from(t.code()), "t").unwrap(), t);
        }
        assert!(Tiling::from_code(-1, "t").is_err());
        let e = Tiling::from_code(2, "params.tiling")
            .unwrap_err()
            .to_string();
        assert!(e.contains("params.tiling is 2"), "{e}");
        assert_eq!(Tiling::default(), Tiling::Fast);
    }
}
