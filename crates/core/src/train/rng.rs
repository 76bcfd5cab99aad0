//! A small deterministic pseudo-random generator for training: xoshiro256++ (Blackman and
//! Vigna) seeded through SplitMix64. The same seed gives the same stream on every platform, and
//! the whole state is four `u64`s, so a checkpoint saves it ([`Rng::state`]) and a resumed run
//! continues the stream exactly ([`Rng::from_state`]).
//!
//! It is not the numpy generator of the PyTorch recipe (`models/nuclei/train`): the draws follow
//! the same distributions, not the same values.

/// xoshiro256++ generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

/// One step of SplitMix64 (the seeding generator recommended for the xoshiro family).
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded with `seed` (four SplitMix64 outputs fill the state).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        // SplitMix64 is a bijection of its counter, and four consecutive outputs are never all
        // zero, so the state is valid.
        Rng { s }
    }

    /// The full state, to save in a checkpoint.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// A generator that continues exactly where the one whose [`Rng::state`] this is stopped.
    /// The all-zero state (a fixed point of xoshiro, never produced by [`Rng::new`]) is replaced
    /// by the state of `Rng::new(0)`.
    pub fn from_state(state: [u64; 4]) -> Self {
        if state == [0; 4] {
            return Rng::new(0);
        }
        Rng { s: state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform draw in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform draw in `[lo, hi)` (`lo` when `lo == hi`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let v = lo + (hi - lo) * self.next_f64();
        // Rounding of `lo + (hi - lo) * u` can reach `hi`; keep the interval half-open.
        if v >= hi && hi > lo { lo } else { v }
    }

    /// A uniform integer in `0..n`, without modulo bias (Lemire's multiply-and-reject).
    ///
    /// # Panics
    /// When `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0): empty range");
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// A standard normal draw (Box–Muller; one uniform pair per draw, the second value is not
    /// kept, so that the state stays four words).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: the logarithm stays finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `true` with probability `p` (`p <= 0`: never, `p >= 1`: always).
    pub fn bool(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let va: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }

    #[test]
    fn reference_values() {
        // SplitMix64 of seed 0: the published first output.
        let mut x = 0u64;
        assert_eq!(splitmix64(&mut x), 0xE220_A839_7B1D_CDAF);
        // xoshiro256++ from state [1, 2, 3, 4]: the reference implementation's first outputs.
        let mut r = Rng::from_state([1, 2, 3, 4]);
        assert_eq!(r.next_u64(), 41943041);
        assert_eq!(r.next_u64(), 58720359);
        assert_eq!(r.next_u64(), 3588806011781223);
    }

    #[test]
    fn ranges() {
        let mut r = Rng::new(7);
        let mut counts = [0usize; 5];
        for _ in 0..10_000 {
            let u = r.uniform(-0.1, 0.1);
            assert!((-0.1..0.1).contains(&u));
            let k = r.below(5);
            counts[k] += 1;
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        assert!(counts.iter().all(|&c| c > 1_700 && c < 2_300), "{counts:?}");
        assert_eq!(r.below(1), 0);
        assert_eq!(r.uniform(3.0, 3.0), 3.0);
        assert!(!r.bool(0.0));
        assert!(r.bool(1.0));
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(1);
        let n = 20_000;
        let v: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn state_round_trip() {
        let mut a = Rng::new(99);
        for _ in 0..17 {
            a.next_u64();
        }
        let mut b = Rng::from_state(a.state());
        for _ in 0..50 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(a, b);
        let z = Rng::from_state([0; 4]);
        assert_eq!(z, Rng::new(0));
    }
}
