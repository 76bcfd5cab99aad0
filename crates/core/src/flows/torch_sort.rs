//! The order in which torch's CPU `argsort` puts equal keys, for Cellpose's seed order.
//!
//! Cellpose sorts its seeds by histogram count (`npts.argsort()`, int32 keys in row-major seed
//! order) and paints them in that order, so among overlapping seeds with equal counts the order
//! decides who wins. torch's default (unstable) CPU sort of a 1-D int32 tensor is, measured on
//! torch 2.15 with cellpose 4.2.1.1:
//! - under 32,768 elements: libstdc++'s `std::sort` (introsort: median-of-three quicksort with
//!   unguarded partitions, heapsort past a depth of 2⌊log₂ n⌋, a final insertion sort over runs of
//!   16) on (key, index) pairs comparing keys only — not stable;
//! - from 32,768 elements on: a radix sort, which is stable.
//!
//! [`argsort`] reproduces both; `tests/fixtures/flows/torch_argsort.npz` (torch's own results)
//! checks it.

/// Elements from which torch sorts 1-D integer tensors with its (stable) radix sort.
const RADIX_FROM: usize = 32_768;
/// libstdc++'s `_S_threshold`: partitions this small are left to the final insertion sort.
const THRESHOLD: usize = 16;

/// Sorts `items` by key in the order torch's CPU `argsort` gives for these keys in this order.
pub(crate) fn argsort<T: Copy>(items: &mut [(i32, T)]) {
    let n = items.len();
    if n >= RADIX_FROM {
        items.sort_by_key(|p| p.0);
        return;
    }
    if n < 2 {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - n.leading_zeros()) as usize;
    introsort_loop(items, 0, n, depth);
    if n > THRESHOLD {
        insertion_sort(items, 0, THRESHOLD);
        for i in THRESHOLD..n {
            unguarded_linear_insert(items, i);
        }
    } else {
        insertion_sort(items, 0, n);
    }
}

fn introsort_loop<T: Copy>(a: &mut [(i32, T)], first: usize, mut last: usize, mut depth: usize) {
    while last - first > THRESHOLD {
        if depth == 0 {
            heap_sort(&mut a[first..last]);
            return;
        }
        depth -= 1;
        // Median of (first + 1, middle, last - 1) moved to first, then the unguarded
        // partition around it.
        let (x, y, z) = (first + 1, first + (last - first) / 2, last - 1);
        let k = |i: usize| a[i].0;
        let m = if k(x) < k(y) {
            if k(y) < k(z) {
                y
            } else if k(x) < k(z) {
                z
            } else {
                x
            }
        } else if k(x) < k(z) {
            x
        } else if k(y) < k(z) {
            z
        } else {
            y
        };
        a.swap(first, m);
        let pivot = a[first].0;
        let (mut f, mut l) = (first + 1, last);
        loop {
            while a[f].0 < pivot {
                f += 1;
            }
            l -= 1;
            while pivot < a[l].0 {
                l -= 1;
            }
            if f >= l {
                break;
            }
            a.swap(f, l);
            f += 1;
        }
        introsort_loop(a, f, last, depth);
        last = f;
    }
}

fn insertion_sort<T: Copy>(a: &mut [(i32, T)], first: usize, last: usize) {
    for i in first + 1..last {
        if a[i].0 < a[first].0 {
            a[first..=i].rotate_right(1);
        } else {
            unguarded_linear_insert(a, i);
        }
    }
}

fn unguarded_linear_insert<T: Copy>(a: &mut [(i32, T)], mut i: usize) {
    let v = a[i];
    while v.0 < a[i - 1].0 {
        a[i] = a[i - 1];
        i -= 1;
    }
    a[i] = v;
}

/// libstdc++'s `__partial_sort(first, last, last)`: `make_heap`, then `sort_heap`.
fn heap_sort<T: Copy>(a: &mut [(i32, T)]) {
    let len = a.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let v = a[parent];
        adjust_heap(a, parent, len, v);
        if parent == 0 {
            break;
        }
        parent -= 1;
    }
    let mut last = len;
    while last > 1 {
        last -= 1;
        let v = a[last];
        a[last] = a[0];
        adjust_heap(a, 0, last, v);
    }
}

/// libstdc++'s `__adjust_heap` (sift the hole down to a leaf, then push `v` up).
fn adjust_heap<T: Copy>(a: &mut [(i32, T)], mut hole: usize, len: usize, v: (i32, T)) {
    let top = hole;
    let mut child = hole;
    while child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if a[child].0 < a[child - 1].0 {
            child -= 1;
        }
        a[hole] = a[child];
        hole = child;
    }
    if len.is_multiple_of(2) && len >= 2 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        a[hole] = a[child - 1];
        hole = child - 1;
    }
    while hole > top {
        let parent = (hole - 1) / 2;
        if a[parent].0 < v.0 {
            a[hole] = a[parent];
            hole = parent;
        } else {
            break;
        }
    }
    a[hole] = v;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seed: u64, n: usize, range: u64) -> Vec<(i32, usize)> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((s >> 33) % range) as i32, i)
            })
            .collect()
    }

    #[test]
    fn sorts_by_key_and_small_inputs_stay_stable() {
        for (seed, n, range) in [
            (1, 10, 3),
            (2, 16, 4),
            (3, 500, 7),
            (4, 5000, 40),
            (5, 40_000, 9),
        ] {
            let mut v = keys(seed, n, range);
            argsort(&mut v);
            assert!(v.windows(2).all(|w| w[0].0 <= w[1].0));
            let mut idx: Vec<usize> = v.iter().map(|p| p.1).collect();
            if n <= THRESHOLD || n >= RADIX_FROM {
                assert!(v.windows(2).all(|w| w[0].0 < w[1].0 || w[0].1 < w[1].1));
            }
            idx.sort_unstable();
            assert!(idx.iter().enumerate().all(|(i, &j)| i == j));
        }
    }

    /// torch's own argsort results (`tests/parity/make_sort_fixture.py`): sizes 2 to 32,768,
    /// keys with many ties, both sides of the radix-sort boundary.
    #[test]
    fn order_equals_torch_argsort() {
        use ndarray::Array1;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/sort/torch_argsort.npz"
        );
        let mut npz = ndarray_npy::NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
        for k in 0..12 {
            let keys: Array1<i32> = npz.by_name(&format!("keys_{k}")).unwrap();
            let want: Array1<i32> = npz.by_name(&format!("order_{k}")).unwrap();
            let mut v: Vec<(i32, usize)> = keys.iter().copied().zip(0..).collect();
            argsort(&mut v);
            let got: Vec<i32> = v.iter().map(|p| p.1 as i32).collect();
            assert_eq!(got, want.to_vec(), "{} keys", keys.len());
        }
    }

    /// The heapsort fallback sorts (it is reached only on adversarial inputs).
    #[test]
    fn heap_sort_sorts() {
        for n in [2, 3, 4, 5, 17, 100, 257] {
            let mut v = keys(n as u64, n, 11);
            heap_sort(&mut v);
            assert!(v.windows(2).all(|w| w[0].0 <= w[1].0), "n {n}");
        }
    }
}
