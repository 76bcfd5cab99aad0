//! C entry points for flows → labels and labels → flows.

use crate::core::flows::{self, FlowsRef, MaskParams};

use super::boundary::{FfiError, boundary, cytoseg_status, expect_len, input, null, output};
use super::versioned::{Versioned, prefix_sizes, read_versioned, write_first_version};

/// Parameters of the flows → labels conversion (Cellpose's names and defaults).
///
/// Always initialize with `cytoseg_masks_params_init()` before changing fields: it sets
/// `struct_size`, which lets later versions append fields without breaking callers.
///
/// All structs with a `struct_size` follow one rule: later versions of this header only append
/// fields; the library accepts the struct of any earlier header (the missing fields take their
/// defaults) and refuses a larger one; `_init` functions write only the fields of the struct's
/// first version.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cytoseg_masks_params {
    /// `sizeof(cytoseg_masks_params)` of the header the program was built with; set by `cytoseg_masks_params_init`. A
    /// struct of an older header (smaller) is accepted: the fields it lacks take their defaults.
    pub struct_size: u32,
    /// Number of Euler integration steps. Default: 200.
    pub niter: u32,
    /// Pixels with cell-probability logit strictly above this are followed (compared in
    /// float32). Default: 0.0.
    pub cellprob_threshold: f32,
    /// Reserved, must be 0.
    pub reserved: u32,
    /// Masks whose flow error exceeds this are removed; <= 0 turns quality control off.
    /// Default: 0.4.
    pub flow_threshold: f64,
    /// Masks larger than this fraction of the image are removed. Default: 0.4.
    pub max_size_fraction: f64,
    /// Masks smaller than this many pixels are removed after hole filling; <= 0 turns both
    /// off (as Cellpose's `compute_masks`). Default: 15.
    pub min_size: i64,
}

impl From<MaskParams> for cytoseg_masks_params {
    fn from(p: MaskParams) -> Self {
        cytoseg_masks_params {
            struct_size: std::mem::size_of::<cytoseg_masks_params>() as u32,
            niter: p.niter,
            cellprob_threshold: p.cellprob_threshold,
            reserved: 0,
            flow_threshold: p.flow_threshold,
            max_size_fraction: p.max_size_fraction,
            min_size: p.min_size,
        }
    }
}

impl Versioned for cytoseg_masks_params {
    const NAME: &'static str = "cytoseg_masks_params";
    const INIT: &'static str = "cytoseg_masks_params_init";
    const FIRST_VERSION_SIZE: usize = 40;
    fn prefix_sizes() -> &'static [usize] {
        prefix_sizes!(cytoseg_masks_params {
            struct_size: u32,
            niter: u32,
            cellprob_threshold: f32,
            reserved: u32,
            flow_threshold: f64,
            max_size_fraction: f64,
            min_size: i64,
        })
    }
    unsafe fn read_size(ptr: *const Self) -> usize {
        // SAFETY: as the trait requires.
        unsafe { (ptr as *const u32).read_unaligned() as usize }
    }
    fn set_size(&mut self, size: usize) {
        self.struct_size = size as u32;
    }
}

impl cytoseg_masks_params {
    /// Converts a struct that [`read_versioned`] (or the caller's complete struct nested in a
    /// larger one) produced; the nested case checks the size here.
    pub(crate) fn to_core(self) -> Result<MaskParams, FfiError> {
        let full = std::mem::size_of::<cytoseg_masks_params>();
        if self.struct_size as usize != full {
            return Err(FfiError(
                cytoseg_status::InvalidArgument,
                format!(
                    "params.struct_size is {}, expected {full}: initialize params with cytoseg_masks_params_init()",
                    self.struct_size,
                ),
            ));
        }
        Ok(MaskParams {
            cellprob_threshold: self.cellprob_threshold,
            flow_threshold: self.flow_threshold,
            niter: self.niter,
            min_size: self.min_size,
            max_size_fraction: self.max_size_fraction,
        })
    }

    /// Reads a caller's struct of any version over `defaults`.
    ///
    /// # Safety
    /// As [`read_versioned`].
    pub(crate) unsafe fn read(
        ptr: *const cytoseg_masks_params,
        defaults: MaskParams,
        name: &str,
    ) -> Result<MaskParams, FfiError> {
        // SAFETY: forwarded contract.
        unsafe { read_versioned(ptr, defaults.into(), name) }?.to_core()
    }
}

/// Fills `params` with the defaults (cellprob_threshold 0, flow_threshold 0.4, niter 200,
/// min_size 15, max_size_fraction 0.4) and sets `struct_size`.
///
/// @param params  Parameters to initialize (caller-owned).
/// @return `CYTOSEG_STATUS_NULL_POINTER` if `params` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_masks_params_init(params: *mut cytoseg_masks_params) -> cytoseg_status {
    boundary(|| {
        // SAFETY: the caller provides a writable struct of some version.
        unsafe { write_first_version(params, MaskParams::default().into(), "params") }
    })
}

/// Converts a Cellpose-style network output into instance labels, exactly as Cellpose 4's
/// `dynamics.compute_masks` does on the CPU.
///
/// @param dp            Flows, float32, `2 * height * width` values: the dY plane then the dX
///                      plane, each row-major (Cellpose's `dP` of shape (2, H, W)).
/// @param dp_len        Number of floats in `dp`; must be `2 * height * width`.
/// @param cellprob      Cell-probability logits, float32, `height * width` row-major.
/// @param cellprob_len  Number of floats in `cellprob`; must be `height * width`.
/// @param height        Image height (>= 2).
/// @param width         Image width (>= 2).
/// @param params        Parameters, or NULL for the defaults.
/// @param labels        Output, caller-allocated, `height * width` uint32 row-major: 0 is
///                      background, masks are numbered 1..n as Cellpose numbers them. Written
///                      only on success.
/// @param labels_len    Number of elements in `labels`; must be `height * width`.
/// @param n_labels      Optional output (may be NULL): the number of masks n.
/// @return `CYTOSEG_STATUS_OK`, or a failure status with a message in
///         `cytoseg_last_error_message` (NULL pointers, mismatched lengths, NaN/Inf input,
///         sizes under 2×2 or too large, invalid parameters).
///
/// Thread safety: may be called concurrently from several threads; the work itself runs on an
/// internal thread pool.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_flows_to_labels(
    dp: *const f32,
    dp_len: usize,
    cellprob: *const f32,
    cellprob_len: usize,
    height: usize,
    width: usize,
    params: *const cytoseg_masks_params,
    labels: *mut u32,
    labels_len: usize,
    n_labels: *mut u32,
) -> cytoseg_status {
    boundary(|| {
        let n = flows::check_size(height, width)?;
        expect_len("dp_len", dp_len, n.checked_mul(2), "2 * height * width")?;
        expect_len("cellprob_len", cellprob_len, Some(n), "height * width")?;
        expect_len("labels_len", labels_len, Some(n), "height * width")?;
        // SAFETY: lengths checked against the image size; validity is the caller's contract.
        let dp = unsafe { input(dp, dp_len, "dp") }?;
        let cellprob = unsafe { input(cellprob, cellprob_len, "cellprob") }?;
        let params = if params.is_null() {
            MaskParams::default()
        } else {
            // SAFETY: non-null; the caller provides an initialized struct of some version.
            unsafe { cytoseg_masks_params::read(params, MaskParams::default(), "params") }?
        };
        let (dy, dx) = dp.split_at(n);
        let flows = FlowsRef {
            dy,
            dx,
            cellprob,
            height,
            width,
        };
        let result = flows::compute_masks_slices(&flows, &params)?;
        // SAFETY: checked for NULL/alignment; length equals height * width.
        let out = unsafe { output(labels, labels_len, "labels") }?;
        out.copy_from_slice(&result);
        if !n_labels.is_null() {
            // SAFETY: non-null; the caller provides a writable uint32_t.
            unsafe { *n_labels = result.iter().copied().max().unwrap_or(0) };
        }
        Ok(())
    })
}

/// Converts 3-D flows to instance labels exactly as cellpose 4.2.1.1's
/// `dynamics.compute_masks(dP, cellprob, do_3D=True, ...)`: voxels above the cell-probability
/// threshold follow the flows (trilinear sampling), seeds grow in 3-D, masks over
/// `max_size_fraction` of the volume are removed, and with `min_size > 0` holes are filled in
/// 3-D and masks under `min_size` voxels removed. There is no flow quality control in 3-D (as in
/// Cellpose): `params->flow_threshold` is not used.
///
/// @param dp            Flows, float32, `3 * planes * height * width` values: the dZ volume,
///                      then dY, then dX, each plane after plane and row-major (Cellpose's `dP`
///                      of shape (3, Z, Y, X)).
/// @param dp_len        Number of floats in `dp`; must be `3 * planes * height * width`.
/// @param cellprob      Cell-probability logits, float32, `planes * height * width`.
/// @param cellprob_len  Number of floats in `cellprob`; must be `planes * height * width`.
/// @param planes        Number of z planes (>= 2; one plane is a 2-D image:
///                      `cytoseg_flows_to_labels`).
/// @param height        Plane height (>= 2).
/// @param width         Plane width (>= 2).
/// @param params        Parameters, or NULL for the defaults.
/// @param labels        Output, caller-allocated, `planes * height * width` uint32: 0 is
///                      background, masks are numbered 1..n as Cellpose numbers them. Written
///                      only on success.
/// @param labels_len    Number of elements in `labels`; must be `planes * height * width`.
/// @param n_labels      Optional output (may be NULL): the number of masks n.
/// @return `CYTOSEG_STATUS_OK`, or a failure status with a message in
///         `cytoseg_last_error_message` (NULL pointers, mismatched lengths, NaN/Inf input,
///         a side under 2 or a volume too large, invalid parameters).
///
/// Thread safety: may be called concurrently from several threads; the work itself runs on an
/// internal thread pool.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_flows_to_labels_3d(
    dp: *const f32,
    dp_len: usize,
    cellprob: *const f32,
    cellprob_len: usize,
    planes: usize,
    height: usize,
    width: usize,
    params: *const cytoseg_masks_params,
    labels: *mut u32,
    labels_len: usize,
    n_labels: *mut u32,
) -> cytoseg_status {
    boundary(|| {
        let n = flows::check_volume_size(planes, height, width)?;
        let need = "planes * height * width";
        expect_len(
            "dp_len",
            dp_len,
            n.checked_mul(3),
            "3 * planes * height * width",
        )?;
        expect_len("cellprob_len", cellprob_len, Some(n), need)?;
        expect_len("labels_len", labels_len, Some(n), need)?;
        // SAFETY: lengths checked against the volume's size; validity is the caller's contract.
        let dp = unsafe { input(dp, dp_len, "dp") }?;
        let cellprob = unsafe { input(cellprob, cellprob_len, "cellprob") }?;
        let params = if params.is_null() {
            MaskParams::default()
        } else {
            // SAFETY: non-null; the caller provides an initialized struct of some version.
            unsafe { cytoseg_masks_params::read(params, MaskParams::default(), "params") }?
        };
        let (dz, rest) = dp.split_at(n);
        let (dy, dx) = rest.split_at(n);
        let flows = flows::Flows3Ref {
            dz,
            dy,
            dx,
            cellprob,
            planes,
            height,
            width,
        };
        let result = flows::compute_masks_3d(&flows, &params)?;
        // SAFETY: checked for NULL/alignment; length equals planes * height * width.
        let out = unsafe { output(labels, labels_len, "labels") }?;
        out.copy_from_slice(&result);
        if !n_labels.is_null() {
            // SAFETY: non-null; the caller provides a writable uint32_t.
            unsafe { *n_labels = result.iter().copied().max().unwrap_or(0) };
        }
        Ok(())
    })
}

/// Computes Cellpose's flows from a label image (labels → flows by heat diffusion from each
/// mask's centre, as `dynamics.masks_to_flows`), e.g. to make training targets.
///
/// @param labels      Label image, uint32, `height * width` row-major; 0 is background, any
///                    other value names a mask.
/// @param labels_len  Number of elements in `labels`; must be `height * width`.
/// @param height      Image height (>= 2).
/// @param width       Image width (>= 2).
/// @param flows       Output, caller-allocated, `2 * height * width` doubles: unit flows, the
///                    dY plane then the dX plane, zero outside masks. Written only on success.
/// @param flows_len   Number of doubles in `flows`; must be `2 * height * width`.
/// @return `CYTOSEG_STATUS_OK` or a failure status with a message.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_labels_to_flows(
    labels: *const u32,
    labels_len: usize,
    height: usize,
    width: usize,
    flows: *mut f64,
    flows_len: usize,
) -> cytoseg_status {
    boundary(|| {
        let n = flows::check_size(height, width)?;
        expect_len("labels_len", labels_len, Some(n), "height * width")?;
        expect_len(
            "flows_len",
            flows_len,
            n.checked_mul(2),
            "2 * height * width",
        )?;
        if flows.is_null() {
            return Err(null("flows"));
        }
        // SAFETY: lengths checked against the image size.
        let labels = unsafe { input(labels, labels_len, "labels") }?;
        let result = flows::labels_to_flows_slices(labels, height, width)?;
        // SAFETY: checked for NULL/alignment; length equals 2 * height * width.
        let out = unsafe { output(flows, flows_len, "flows") }?;
        out.copy_from_slice(&result);
        Ok(())
    })
}

/// Computes cellpose 4.2.1.1's 3-D flows from a label volume (`dynamics.masks_to_flows_gpu_3d`,
/// the targets of its 3-D training: heat diffusion from each mask's centre over 6-connected
/// neighbours), bit for bit. The one exception: in volumes over 4e7 voxels Cellpose normalizes
/// in float32 and divides by a zero norm at one-voxel masks (and far along very thin masks),
/// giving NaN or ±inf there; cytoseg gives 0.
///
/// @param labels      Label volume, uint32, `planes * height * width` (plane after plane,
///                    each row-major); 0 is background, any other value names a mask.
/// @param labels_len  Number of elements in `labels`; must be `planes * height * width`.
/// @param planes      Number of planes (>= 2; one plane is a 2-D image:
///                    `cytoseg_labels_to_flows`).
/// @param height      Plane height (>= 2).
/// @param width       Plane width (>= 2).
/// @param flows       Output, caller-allocated, `3 * planes * height * width` doubles: unit
///                    flows, the dZ volume, then dY, then dX, zero outside masks. Written only
///                    on success.
/// @param flows_len   Number of doubles in `flows`; must be `3 * planes * height * width`.
/// @return `CYTOSEG_STATUS_OK` or a failure status with a message (`CYTOSEG_STATUS_TOO_LARGE`
///         when the work would not fit the memory available: each mask is diffused over its
///         bounding box, so a label used for distant objects needs a large one).
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_labels_to_flows_3d(
    labels: *const u32,
    labels_len: usize,
    planes: usize,
    height: usize,
    width: usize,
    flows: *mut f64,
    flows_len: usize,
) -> cytoseg_status {
    boundary(|| {
        let n = flows::check_volume_size(planes, height, width)?;
        expect_len("labels_len", labels_len, Some(n), "planes * height * width")?;
        expect_len(
            "flows_len",
            flows_len,
            n.checked_mul(3),
            "3 * planes * height * width",
        )?;
        if flows.is_null() {
            return Err(null("flows"));
        }
        // SAFETY: lengths checked against the volume size.
        let labels = unsafe { input(labels, labels_len, "labels") }?;
        let result = flows::labels_to_flows_3d(labels, planes, height, width)?;
        // SAFETY: checked for NULL/alignment; length equals 3 * planes * height * width.
        let out = unsafe { output(flows, flows_len, "flows") }?;
        out.copy_from_slice(&result);
        Ok(())
    })
}

/// Links the per-plane 2-D labels of a z-stack into 3-D labels, in place, exactly as
/// cellpose 4.2.1.1's stitching mode: `utils.stitch3D(masks, stitch_threshold)` (each plane's
/// masks take the id of the previous plane's mask they overlap best by IoU, at least
/// `stitch_threshold`, else a new id) then `utils.fill_holes_and_remove_small_masks(masks,
/// min_size)` on the volume (holes filled 6-connected, masks under `min_size` voxels removed,
/// labels renumbered 1..n).
///
/// @param labels         Labels, uint32, `planes * height * width`: plane after plane, each
///                       row-major, every plane numbered on its own (as `cytoseg_flows_to_labels`
///                       with `min_size` -1 gives them, as Cellpose makes them before stitching).
///                       Replaced by the 3-D labels on success only.
/// @param labels_len     Number of elements in `labels`; must be `planes * height * width`.
/// @param planes         Number of planes (>= 1).
/// @param height         Plane height (>= 2).
/// @param width          Plane width (>= 2).
/// @param stitch_threshold  Smallest IoU that links two masks (> 0; Cellpose's usual 0.25).
/// @param min_size       Masks with fewer voxels are removed; <= 0 keeps all (holes are still
///                       filled).
/// @param n_labels       Optional output (may be NULL): the largest 3-D label.
/// @return `CYTOSEG_STATUS_OK`, or a failure status with a message (NULL pointer, mismatched
///         length, threshold not above 0, too many labels).
///
/// Thread safety: may be called concurrently from several threads on different buffers.
#[unsafe(no_mangle)]
pub extern "C" fn cytoseg_stitch_labels(
    labels: *mut u32,
    labels_len: usize,
    planes: usize,
    height: usize,
    width: usize,
    stitch_threshold: f64,
    min_size: i64,
    n_labels: *mut u32,
) -> cytoseg_status {
    boundary(|| {
        let n = flows::check_size(height, width)?;
        expect_len(
            "labels_len",
            labels_len,
            n.checked_mul(planes),
            "planes * height * width",
        )?;
        // SAFETY: non-null and aligned (checked), length checked against the volume's size;
        // validity and exclusive access are the caller's contract.
        let buf = unsafe { output(labels, labels_len, "labels") }?;
        let mut work: Vec<u32> = Vec::new();
        work.try_reserve_exact(buf.len()).map_err(|_| {
            FfiError(
                cytoseg_status::TooLarge,
                format!("no memory for a copy of {} labels", buf.len()),
            )
        })?;
        work.extend_from_slice(buf);
        flows::stitch_planes(&mut work, planes, height, width, stitch_threshold, min_size)?;
        buf.copy_from_slice(&work);
        if !n_labels.is_null() {
            // SAFETY: non-null; the caller provides a writable uint32_t.
            unsafe { *n_labels = work.iter().copied().max().unwrap_or(0) };
        }
        Ok(())
    })
}
