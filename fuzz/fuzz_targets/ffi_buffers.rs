//! The C entry points that take caller buffers, called as a C caller would: with buffers of
//! the sizes claimed (small images of arbitrary labels, flows, pixels, strides, dtypes and
//! parameters), or with sizes whose products overflow `size_t` or `isize` next to a tiny
//! buffer, which must be refused before the buffer is touched. Every call must return a
//! status (never abort or panic across the boundary); overflowing sizes must not return OK.
#![no_main]
use std::ffi::c_void;

use cytoseg::ffi::*;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Size {
    /// A small image: sides 1..=32.
    Small(u8, u8),
    /// Sides whose product overflows (checked in the harness).
    Huge(u64, u64),
}

#[derive(Arbitrary, Debug)]
enum Call {
    Measure {
        size: Size,
        labels: Vec<u32>,
        with_image: bool,
        dtype: i8,
        channels: u8,
        stride_pad: u8,
        pixels: Vec<u8>,
        calibrated: Option<(f64, f64)>,
    },
    FlowsToLabels {
        size: Size,
        flows: Vec<f32>,
        params: Option<(u8, f32, f64, f64, i64)>,
        len_delta: i8,
    },
    LabelsToFlows {
        size: Size,
        labels: Vec<u32>,
        len_delta: i8,
    },
    FlowsToLabels3d {
        size: Size,
        planes: u8,
        flows: Vec<f32>,
        niter: u8,
        len_delta: i8,
    },
    Evaluate {
        len: u16,
        truth: Vec<u32>,
        pred: Vec<u32>,
        thresholds: Vec<f64>,
        criterion: i8,
        dice: bool,
    },
    LabelsToFlows3d {
        size: Size,
        planes: u8,
        labels: Vec<u32>,
        len_delta: i8,
    },
}

/// `(height, width, huge)`; `None` for huge sides that a real caller could back with memory:
/// `height * width` elements of `elem` bytes (the first buffer each entry point checks) must
/// overflow `size_t` or exceed `isize::MAX` bytes, or the call would read `height * width`
/// elements from the tiny buffer the harness passes (a lying caller, not an engine bug).
fn dims(s: &Size, elem: usize) -> Option<(usize, usize, bool)> {
    match *s {
        Size::Small(h, w) => Some((h as usize % 32 + 1, w as usize % 32 + 1, false)),
        Size::Huge(h, w) => {
            let (h, w) = (h as usize, w as usize);
            let overflow = h
                .checked_mul(w)
                .and_then(|n| n.checked_mul(elem))
                .is_none_or(|b| b > isize::MAX as usize);
            overflow.then_some((h, w, true))
        }
    }
}

/// `n` values cycled from `src` (or `fill`), for a buffer of exactly the claimed length.
fn fill<T: Copy>(src: &[T], n: usize, fill: T) -> Vec<T> {
    (0..n)
        .map(|i| {
            if src.is_empty() {
                fill
            } else {
                src[i % src.len()]
            }
        })
        .collect()
}

fn adjust(n: usize, delta: i8) -> usize {
    n.saturating_add_signed(delta as isize % 3)
}

fuzz_target!(|call: Call| {
    match call {
        Call::Measure {
            size,
            labels,
            with_image,
            dtype,
            channels,
            stride_pad,
            pixels,
            calibrated,
        } => {
            let Some((h, w, huge)) = dims(&size, 4) else {
                return;
            };
            let n = if huge { 1 } else { h * w };
            let lab = fill(&labels, n, 1);
            let channels = channels as usize % 4;
            let dtype = dtype as i32 % 5;
            let sample = match dtype {
                1 => 1,
                2 => 2,
                _ => 4,
            };
            let stride = w
                .wrapping_mul(channels.max(1))
                .wrapping_add(stride_pad as usize % 4)
                .wrapping_mul(sample)
                .wrapping_add(usize::from(stride_pad >= 128));
            // Bytes the caller passes (as many as claimed for small images), 8-byte aligned.
            let words = if huge {
                1
            } else {
                ((h - 1) * stride + w * channels.max(1) * sample).div_ceil(8) + 1
            };
            let px: Vec<u64> = (0..words)
                .map(|i| {
                    let b = |k: usize| {
                        if pixels.is_empty() {
                            0
                        } else {
                            pixels[(8 * i + k) % pixels.len()]
                        }
                    };
                    u64::from_le_bytes(std::array::from_fn(b))
                })
                .collect();
            let unit = c"µm";
            let cal = calibrated.map(|(pw, ph)| {
                let mut c = std::mem::MaybeUninit::<cytoseg_calibration>::zeroed();
                // SAFETY: a valid pointer to a calibration struct.
                let _ = cytoseg_calibration_init(c.as_mut_ptr());
                // SAFETY: initialized by cytoseg_calibration_init (all fields plain data).
                let mut c = unsafe { c.assume_init() };
                c.pixel_width = pw;
                c.pixel_height = ph;
                c.unit = unit.as_ptr();
                c
            });
            let mut table: *mut cytoseg_table = std::ptr::null_mut();
            let status = cytoseg_measure(
                lab.as_ptr(),
                w,
                h,
                if with_image {
                    px.as_ptr() as *const c_void
                } else {
                    std::ptr::null()
                },
                dtype,
                channels,
                stride,
                cal.as_ref().map_or(std::ptr::null(), |c| c as *const _),
                &mut table,
            );
            if huge {
                assert_ne!(status as i32, 0, "overflowing size accepted");
            }
            if !table.is_null() {
                let rows = cytoseg_table_rows(table);
                let cols = cytoseg_table_columns(table);
                if cols > 0 {
                    let mut col = vec![0f64; rows];
                    let _ = cytoseg_table_column(table, cols - 1, col.as_mut_ptr(), rows);
                }
                cytoseg_table_free(table);
            }
        }
        Call::FlowsToLabels {
            size,
            flows,
            params,
            len_delta,
        } => {
            let Some((h, w, huge)) = dims(&size, 4) else {
                return;
            };
            let n = if huge { 1 } else { h * w };
            let dp = fill(&flows, 2 * n, 0.5);
            let cp = fill(&flows, n, 1.0);
            let mut out = vec![0u32; n];
            let p = params.map(|(niter, cellprob, flow, frac, min_size)| {
                let mut p = std::mem::MaybeUninit::<cytoseg_masks_params>::zeroed();
                let _ = cytoseg_masks_params_init(p.as_mut_ptr());
                // SAFETY: initialized by cytoseg_masks_params_init.
                let mut p = unsafe { p.assume_init() };
                p.niter = niter as u32 % 50; // iterations cost time, not memory
                p.cellprob_threshold = cellprob;
                p.flow_threshold = flow;
                p.max_size_fraction = frac;
                p.min_size = min_size;
                p
            });
            // Claimed lengths: exact, or off by a little (must be refused, not read past).
            let dp_len = if len_delta > 0 {
                dp.len().min(adjust(2 * n, -len_delta))
            } else {
                2 * n
            };
            let status = cytoseg_flows_to_labels(
                dp.as_ptr(),
                if huge { 2 * n } else { dp_len },
                cp.as_ptr(),
                n,
                h,
                w,
                p.as_ref().map_or(std::ptr::null(), |p| p as *const _),
                out.as_mut_ptr(),
                n,
                std::ptr::null_mut(),
            );
            if huge {
                assert_ne!(status as i32, 0, "overflowing size accepted");
            }
        }
        Call::FlowsToLabels3d {
            size,
            planes,
            flows,
            niter,
            len_delta,
        } => {
            let Some((h, w, huge)) = dims(&size, 4) else {
                return;
            };
            let d = planes as usize % 8 + 1;
            let n = if huge { 1 } else { d * h * w };
            let dp = fill(&flows, 3 * n, 0.5);
            let cp = fill(&flows, n, 1.0);
            let mut out = vec![0u32; n];
            let mut p = std::mem::MaybeUninit::<cytoseg_masks_params>::zeroed();
            let _ = cytoseg_masks_params_init(p.as_mut_ptr());
            // SAFETY: initialized by cytoseg_masks_params_init.
            let mut p = unsafe { p.assume_init() };
            p.niter = niter as u32 % 50;
            let dp_len = if len_delta > 0 {
                dp.len().min(adjust(3 * n, -len_delta))
            } else {
                3 * n
            };
            let status = cytoseg_flows_to_labels_3d(
                dp.as_ptr(),
                if huge { 3 * n } else { dp_len },
                cp.as_ptr(),
                n,
                d,
                h,
                w,
                &p,
                out.as_mut_ptr(),
                n,
                std::ptr::null_mut(),
            );
            if huge {
                assert_ne!(status as i32, 0, "overflowing size accepted");
            }
        }
        Call::LabelsToFlows {
            size,
            labels,
            len_delta,
        } => {
            let Some((h, w, huge)) = dims(&size, 4) else {
                return;
            };
            let n = if huge { 1 } else { h * w };
            let lab = fill(&labels, n, 1);
            let mut flows = vec![0f64; 2 * n];
            let flows_len = if len_delta > 0 {
                adjust(2 * n, -len_delta)
            } else {
                2 * n
            };
            let status =
                cytoseg_labels_to_flows(lab.as_ptr(), n, h, w, flows.as_mut_ptr(), flows_len);
            if huge {
                assert_ne!(status as i32, 0, "overflowing size accepted");
            }
        }
        Call::LabelsToFlows3d {
            size,
            planes,
            labels,
            len_delta,
        } => {
            let Some((h, w, huge)) = dims(&size, 4) else {
                return;
            };
            let d = planes as usize % 8 + 1;
            let n = if huge { 1 } else { d * h * w };
            let lab = fill(&labels, n, 1);
            let mut flows = vec![0f64; 3 * n];
            let flows_len = if len_delta > 0 {
                adjust(3 * n, -len_delta)
            } else {
                3 * n
            };
            let status = cytoseg_labels_to_flows_3d(
                lab.as_ptr(),
                n,
                d,
                h,
                w,
                flows.as_mut_ptr(),
                flows_len,
            );
            if huge {
                assert_ne!(status as i32, 0, "overflowing size accepted");
            }
        }
        Call::Evaluate {
            len,
            truth,
            pred,
            thresholds,
            criterion,
            dice,
        } => {
            let len = len as usize % 2048;
            let t = fill(&truth, len, 0);
            let p = fill(&pred, len, 0);
            let thr: Vec<f64> = thresholds.into_iter().take(8).collect();
            let mut stats = vec![cytoseg_matching_stats::default(); thr.len()];
            let mut d = 0f64;
            let _ = cytoseg_evaluate_labels(
                if len == 0 {
                    std::ptr::null()
                } else {
                    t.as_ptr()
                },
                if len == 0 {
                    std::ptr::null()
                } else {
                    p.as_ptr()
                },
                len,
                if thr.is_empty() {
                    std::ptr::null()
                } else {
                    thr.as_ptr()
                },
                thr.len(),
                criterion as i32 % 4,
                if stats.is_empty() {
                    std::ptr::null_mut()
                } else {
                    stats.as_mut_ptr()
                },
                if dice { &mut d } else { std::ptr::null_mut() },
            );
        }
    }
});
