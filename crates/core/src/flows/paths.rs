//! Paths already followed to their cycle, kept so that later trajectories that join one stop
//! there (the 3-D flow following).
//!
//! The Euler step is a fixed function of the position, so two trajectories that reach the same
//! position (bitwise) go on identically. Trajectories of one object funnel into a few shared
//! paths: on the synthetic benchmark flows of `tests/parity/bench_volume.py`, the 760,000
//! trajectories found periodic within 200 steps end on 7,629 distinct cycles, and nearly all
//! of them join a path an earlier trajectory took, on average 27 steps before they enter their
//! cycle. So every trajectory whose cycle is found (a *pioneer*) leaves its whole path here —
//! each position with its step, and the final voxel of each — and a trajectory still being
//! followed looks its position up: once it is on a known path with `r` steps left, its final
//! voxel is the one the path holds `r` steps further on, read off the cycle when that lies
//! beyond it. Exactly the voxel it would have reached.

/// Key bits of an empty slot: a NaN, which no position is.
const EMPTY: u32 = u32::MAX;

/// A position on a known path: the bits of its (x, y, z) and where it is on which path.
#[derive(Clone, Copy)]
struct Slot {
    key: [u32; 3],
    /// Index of the path in [`KnownPaths::paths`].
    path: u32,
    /// Step of the path's trajectory after which it was at this position.
    step: u32,
}

const EMPTY_SLOT: Slot = Slot {
    key: [EMPTY; 3],
    path: 0,
    step: 0,
};

/// One pioneer's path: the final voxels of its states `first..first + len` are
/// `voxels[base..base + len]`; the states from step `cycle_start` on repeat every `period`
/// steps.
#[derive(Clone, Copy)]
struct Path {
    base: usize,
    first: u64,
    cycle_start: u64,
    period: u64,
}

/// The known paths of one batch of trajectories: an open-addressing table from positions to
/// their place on a path, and each path's voxels.
pub(super) struct KnownPaths {
    slots: Vec<Slot>,
    /// Indices of the filled slots.
    used: Vec<u32>,
    voxels: Vec<[i32; 3]>,
    paths: Vec<Path>,
}

impl KnownPaths {
    /// No paths yet.
    pub(super) fn new() -> Self {
        KnownPaths {
            slots: vec![EMPTY_SLOT; 1 << 15],
            used: Vec::new(),
            voxels: Vec::new(),
            paths: Vec::new(),
        }
    }

    /// Forgets every path (the table keeps its size).
    pub(super) fn clear(&mut self) {
        for &i in &self.used {
            self.slots[i as usize] = EMPTY_SLOT;
        }
        self.used.clear();
        self.voxels.clear();
        self.paths.clear();
    }

    /// Whether no path is known (nothing to look up).
    #[inline(always)]
    pub(super) fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    #[inline(always)]
    fn home(&self, key: [u32; 3]) -> usize {
        let h = u64::from(key[0]).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(key[1])
                .wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
                .rotate_left(21)
            ^ u64::from(key[2])
                .wrapping_mul(0x1656_67B1_9E37_79F9)
                .rotate_left(42);
        ((h ^ (h >> 29)) as usize) & (self.slots.len() - 1)
    }

    /// Adds the path of a trajectory whose position after step `th` equals the one `period`
    /// steps earlier (`0 < period <= th - first`), known from step `first` on: `state(s)` gives
    /// the bits of the position after step `s` and its final voxel, for `s` in `first..th`.
    /// Positions already on a known path keep their first place (both are right).
    pub(super) fn add(
        &mut self,
        first: u64,
        th: u64,
        period: u64,
        mut state: impl FnMut(u64) -> ([u32; 3], [i32; 3]),
    ) {
        debug_assert!(period > 0 && first + period <= th);
        let (Ok(path), Ok(_)) = (u32::try_from(self.paths.len()), u32::try_from(th)) else {
            return;
        };
        let base = self.voxels.len();
        self.paths.push(Path {
            base,
            first,
            cycle_start: th - period,
            period,
        });
        for s in first..th {
            let (key, voxel) = state(s);
            self.voxels.push(voxel);
            if (self.used.len() + 1) * 2 > self.slots.len() {
                self.grow();
            }
            let mask = self.slots.len() - 1;
            let mut i = self.home(key);
            loop {
                let slot = &mut self.slots[i];
                if slot.key == key {
                    break;
                }
                if slot.key[0] == EMPTY {
                    *slot = Slot {
                        key,
                        path,
                        step: s as u32,
                    };
                    self.used.push(i as u32);
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![EMPTY_SLOT; size]);
        let mask = size - 1;
        self.used.clear();
        for slot in old.into_iter().filter(|s| s.key[0] != EMPTY) {
            let mut i = self.home(slot.key);
            while self.slots[i].key[0] != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
            self.used.push(i as u32);
        }
    }

    /// The final voxel of a trajectory at the position with bits `key` and `remaining` steps
    /// to go, when that position is on a known path.
    #[inline(always)]
    pub(super) fn final_voxel(&self, key: [u32; 3], remaining: u64) -> Option<[i32; 3]> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            if slot.key == key {
                let p = self.paths[slot.path as usize];
                let q = u64::from(slot.step) + remaining;
                let q = if q >= p.cycle_start {
                    p.cycle_start + (q - p.cycle_start) % p.period
                } else {
                    q
                };
                return Some(self.voxels[p.base + (q - p.first) as usize]);
            }
            if slot.key[0] == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path 0 → 1 → … → 5 → 6 → 3 (cycle of period 4 from step 3): every state and every
    /// remaining count reads the state a direct walk reaches.
    #[test]
    fn reads_the_state_a_walk_reaches() {
        let walk = |s: u64| if s < 3 { s } else { 3 + (s - 3) % 4 };
        let key = |n: u64| [n as u32, 7, 9];
        let mut known = KnownPaths::new();
        assert!(known.is_empty() && known.final_voxel(key(0), 5).is_none());
        known.add(0, 7, 4, |s| (key(walk(s)), [walk(s) as i32, 0, 0]));
        for s in 0..7 {
            for r in 0..40 {
                let want = walk(s + r) as i32;
                assert_eq!(
                    known.final_voxel(key(walk(s)), r),
                    Some([want, 0, 0]),
                    "{s} {r}"
                );
            }
        }
        assert!(known.final_voxel(key(99), 1).is_none());
    }

    #[test]
    fn keeps_every_state_through_growth() {
        let mut known = KnownPaths::new();
        // 5,000 paths of one state each (a fixed point): more than the first table holds.
        for n in 0..5000u32 {
            known.add(10, 11, 1, |_| ([n, n ^ 0x55, 1], [n as i32, 1, 2]));
        }
        for n in 0..5000u32 {
            assert_eq!(
                known.final_voxel([n, n ^ 0x55, 1], 3),
                Some([n as i32, 1, 2])
            );
        }
    }
}
