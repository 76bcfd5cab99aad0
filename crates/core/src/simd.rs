//! Run-time choice of the instruction set for the hot numeric loops.
//!
//! cytoseg is built for the baseline of its target (x86-64 with SSE2: every x86-64 CPU), so the
//! library loads into any host. The loops that dominate flows → labels (the lane-parallel Euler
//! integration and the flow-error heat diffusion) run through [`dispatch`], which compiles the
//! closure a second time for AVX2 + FMA (x86-64-v3: Intel Haswell 2013+, AMD Excavator 2015+) and
//! picks that copy when the CPU has those instructions (`pulp`'s run-time detection).
//!
//! Results do not depend on the choice: the engine's float32/float64 arithmetic is IEEE-754
//! exactly rounded either way (`mul_add` is a fused multiply-add with one rounding with or
//! without hardware FMA; without it, it is a correctly rounded library call), so the labels are
//! identical on every CPU. Tests check this by forcing the baseline path ([`set_baseline_only`])
//! and by running the C API under an emulated pre-AVX CPU.
//!
//! `CYTOSEG_SIMD=baseline` (read once, at the first dispatch) forces the baseline path, for
//! comparisons and for diagnosing a CPU.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Environment variable that forces the baseline instruction set when set to `baseline`.
pub const SIMD_ENV: &str = "CYTOSEG_SIMD";

static DETECTED: OnceLock<pulp::Arch> = OnceLock::new();
static BASELINE_ONLY: AtomicBool = AtomicBool::new(false);

fn arch() -> pulp::Arch {
    *DETECTED.get_or_init(|| {
        if std::env::var(SIMD_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("baseline")) {
            pulp::Arch::Scalar
        } else {
            pulp::Arch::new()
        }
    })
}

/// Forces (or stops forcing) the baseline instruction set for every later [`dispatch`] in
/// this process. Only speed changes; results are identical (see the module docs).
pub fn set_baseline_only(on: bool) {
    BASELINE_ONLY.store(on, Ordering::Relaxed);
}

/// The instruction set that [`dispatch`] uses now: `"x86-64-v3 (AVX2+FMA)"` or `"baseline"`.
pub fn active() -> &'static str {
    if BASELINE_ONLY.load(Ordering::Relaxed) {
        return "baseline";
    }
    match arch() {
        pulp::Arch::Scalar => "baseline",
        #[allow(unreachable_patterns)]
        _ => "x86-64-v3 (AVX2+FMA)",
    }
}

/// A piece of hot numeric work that [`dispatch`] compiles once per instruction set.
///
/// `run` and everything it calls that should be vectorized must be `#[inline(always)]`, so that
/// the whole body is compiled into each copy (a closure would not be: the compiler keeps a
/// closure's body out of line, compiled for the baseline).
pub(crate) trait Kernel {
    /// What the work returns.
    type Output;
    /// Does the work.
    fn run(self) -> Self::Output;
}

struct Adapter<K>(K);

impl<K: Kernel> pulp::WithSimd for Adapter<K> {
    type Output = K::Output;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> K::Output {
        self.0.run()
    }
}

/// Runs an explicitly vectorized operation with the best instruction set this CPU has,
/// AVX-512 included (the baseline when forced, see [`set_baseline_only`]): the trainer's
/// convolutions.
#[inline(always)]
pub(crate) fn dispatch_simd<W: pulp::WithSimd>(op: W) -> W::Output {
    if BASELINE_ONLY.load(Ordering::Relaxed) {
        return pulp::Simd::vectorize(pulp::Scalar::new(), op);
    }
    arch().dispatch(op)
}

/// Runs `kernel` compiled for the best instruction set this CPU has.
#[inline(always)]
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    if BASELINE_ONLY.load(Ordering::Relaxed) {
        return kernel.run();
    }
    // flows → labels stays on AVX2 at most: its speed was measured there, and its results
    // are the same on every instruction set
    #[cfg(target_arch = "x86_64")]
    if matches!(arch(), pulp::Arch::V3(_) | pulp::Arch::V4(_))
        && let Some(v3) = pulp::x86::V3::try_new()
    {
        return pulp::Simd::vectorize(v3, Adapter(kernel));
    }
    arch().dispatch(Adapter(kernel))
}
