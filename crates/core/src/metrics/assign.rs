//! Assignment solvers for the matching metrics.
//!
//! * [`scipy_lsap`] is a line-by-line port of SciPy's `linear_sum_assignment` (the shortest
//!   augmenting path method of Crouse 2016 in `rectangular_lsap.cpp`, SciPy ≥ 1.6 incl. 1.17),
//!   with the same float64 operations in the same order, so it returns the very assignment SciPy
//!   returns, ties and zero-cost "filler" pairs included. It never stores the dense matrix (one
//!   row at a time is expanded from the sparse entries), but its time is O(rows × columns).
//! * [`SparseAssigner`] finds an optimal assignment of the same cost on the sparse graph of
//!   overlapping pairs only, solving every connected component separately by successive
//!   shortest augmenting paths (Dijkstra on exact fixed-point costs). Its optimum equals SciPy's;
//!   only the choice among exactly tied optima can differ.
//! * [`max_matching`] is Hopcroft–Karp, for the true-positive counts that only depend on the
//!   maximum matching size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::{Error, Result};

use super::overlap::NONE;

/// Runs SciPy's `linear_sum_assignment` on an `nr × nc` cost matrix whose entries are
/// `default_cost` except at the listed `(row, col, cost)` entries (no duplicates).
/// Returns `min(nr, nc)` pairs `(row, col)` sorted by row, exactly as SciPy does.
pub(crate) fn scipy_lsap(
    nr: usize,
    nc: usize,
    entries: &[(u32, u32, f64)],
    default_cost: f64,
) -> Result<Vec<(u32, u32)>> {
    if nr == 0 || nc == 0 {
        return Ok(Vec::new());
    }
    let transpose = nc < nr;
    let (snr, snc) = if transpose { (nc, nr) } else { (nr, nc) };
    // Entries grouped by solver row.
    let mut ptr = vec![0usize; snr + 1];
    for &(r, c, _) in entries {
        let sr = if transpose { c } else { r } as usize;
        ptr[sr + 1] += 1;
    }
    for k in 1..=snr {
        ptr[k] += ptr[k - 1];
    }
    let mut fill = ptr.clone();
    let mut ecol = vec![0u32; entries.len()];
    let mut eval = vec![0f64; entries.len()];
    for &(r, c, x) in entries {
        let (sr, sc) = if transpose { (c, r) } else { (r, c) };
        let slot = &mut fill[sr as usize];
        ecol[*slot] = sc;
        eval[*slot] = x;
        *slot += 1;
    }

    let mut rowbuf = vec![default_cost; snc];
    let mut u = vec![0f64; snr];
    let mut v = vec![0f64; snc];
    let mut spc = vec![0f64; snc];
    let mut path = vec![NONE as usize; snc];
    let mut col4row = vec![NONE as usize; snr];
    let mut row4col = vec![NONE as usize; snc];
    let mut sr_set = vec![false; snr];
    let mut sc_set = vec![false; snc];
    let mut remaining = vec![0usize; snc];
    let free = NONE as usize;

    for cur in 0..snr {
        // augmenting_path
        let mut min_val = 0f64;
        let mut num_remaining = snc;
        for (it, slot) in remaining.iter_mut().enumerate() {
            *slot = snc - it - 1;
        }
        sr_set.fill(false);
        sc_set.fill(false);
        spc.fill(f64::INFINITY);
        let mut sink = free;
        let mut i = cur;
        while sink == free {
            let mut index = free;
            let mut lowest = f64::INFINITY;
            sr_set[i] = true;
            for k in ptr[i]..ptr[i + 1] {
                rowbuf[ecol[k] as usize] = eval[k];
            }
            let ui = u[i];
            for (it, &j) in remaining[..num_remaining].iter().enumerate() {
                let r = min_val + rowbuf[j] - ui - v[j];
                if r < spc[j] {
                    path[j] = i;
                    spc[j] = r;
                }
                if spc[j] < lowest || (spc[j] == lowest && row4col[j] == free) {
                    lowest = spc[j];
                    index = it;
                }
            }
            for k in ptr[i]..ptr[i + 1] {
                rowbuf[ecol[k] as usize] = default_cost;
            }
            min_val = lowest;
            if min_val == f64::INFINITY || index == free {
                return Err(Error::invalid("assignment problem is infeasible"));
            }
            let j = remaining[index];
            if row4col[j] == free {
                sink = j;
            } else {
                i = row4col[j];
            }
            sc_set[j] = true;
            num_remaining -= 1;
            remaining[index] = remaining[num_remaining];
        }
        // update dual variables
        u[cur] += min_val;
        for i in 0..snr {
            if sr_set[i] && i != cur {
                u[i] += min_val - spc[col4row[i]];
            }
        }
        for j in 0..snc {
            if sc_set[j] {
                v[j] -= min_val - spc[j];
            }
        }
        // augment previous solution
        let mut j = sink;
        loop {
            let i = path[j];
            row4col[j] = i;
            std::mem::swap(&mut col4row[i], &mut j);
            if i == cur {
                break;
            }
        }
    }

    let mut out: Vec<(u32, u32)> = col4row
        .iter()
        .enumerate()
        .map(|(i, &j)| {
            if transpose {
                (j as u32, i as u32)
            } else {
                (i as u32, j as u32)
            }
        })
        .collect();
    if transpose {
        out.sort_unstable();
    }
    Ok(out)
}

/// Connected components of a bipartite graph given by its edges sorted by `(row, col)`.
#[derive(Debug, Clone)]
pub(crate) struct Components {
    /// Offsets into `rows` per component.
    comp_rows: Vec<usize>,
    /// Global rows of each component, ascending.
    rows: Vec<u32>,
    /// Offsets into `cols` per component.
    comp_cols: Vec<usize>,
    /// Global columns of each component, ascending.
    cols: Vec<u32>,
    /// CSR offsets of the edges by global row.
    row_edges: Vec<usize>,
    /// Local (within its component) column of every edge.
    edge_local_col: Vec<u32>,
    /// Global column of every edge.
    edge_col: Vec<u32>,
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
}

impl Components {
    /// Builds the components of the graph with `n_rows` rows, `n_cols` columns and the given
    /// edges, which must be sorted by `(row, col)` without duplicates.
    pub(crate) fn new(n_rows: usize, n_cols: usize, edges: &[(u32, u32)]) -> Self {
        let n = n_rows + n_cols;
        let mut parent: Vec<u32> = (0..n as u32).collect();
        let mut row_edges = vec![0usize; n_rows + 1];
        let mut has_col = vec![false; n_cols];
        for &(r, c) in edges {
            row_edges[r as usize + 1] += 1;
            has_col[c as usize] = true;
            let a = find(&mut parent, r);
            let b = find(&mut parent, n_rows as u32 + c);
            if a != b {
                // Keep the smaller id as root (rows come first), so roots are stable.
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                parent[hi as usize] = lo;
            }
        }
        for k in 1..=n_rows {
            row_edges[k] += row_edges[k - 1];
        }
        // Number components by their first row.
        let mut comp_of_root = vec![NONE; n];
        let mut n_comp = 0usize;
        let mut row_comp = vec![NONE; n_rows];
        for r in 0..n_rows {
            if row_edges[r + 1] > row_edges[r] {
                let root = find(&mut parent, r as u32) as usize;
                if comp_of_root[root] == NONE {
                    comp_of_root[root] = n_comp as u32;
                    n_comp += 1;
                }
                row_comp[r] = comp_of_root[root];
            }
        }
        let mut comp_rows = vec![0usize; n_comp + 1];
        let mut comp_cols = vec![0usize; n_comp + 1];
        for &c in &row_comp {
            if c != NONE {
                comp_rows[c as usize + 1] += 1;
            }
        }
        let mut col_comp = vec![NONE; n_cols];
        for c in 0..n_cols {
            if has_col[c] {
                let root = find(&mut parent, (n_rows + c) as u32) as usize;
                col_comp[c] = comp_of_root[root];
                comp_cols[col_comp[c] as usize + 1] += 1;
            }
        }
        for k in 1..=n_comp {
            comp_rows[k] += comp_rows[k - 1];
            comp_cols[k] += comp_cols[k - 1];
        }
        let mut rows = vec![0u32; comp_rows[n_comp]];
        let mut cols = vec![0u32; comp_cols[n_comp]];
        let mut fr = comp_rows.clone();
        let mut fc = comp_cols.clone();
        for (r, &c) in row_comp.iter().enumerate() {
            if c != NONE {
                rows[fr[c as usize]] = r as u32;
                fr[c as usize] += 1;
            }
        }
        let mut local_col = vec![NONE; n_cols];
        for (c, &k) in col_comp.iter().enumerate() {
            if k != NONE {
                local_col[c] = (fc[k as usize] - comp_cols[k as usize]) as u32;
                cols[fc[k as usize]] = c as u32;
                fc[k as usize] += 1;
            }
        }
        let edge_local_col = edges.iter().map(|&(_, c)| local_col[c as usize]).collect();
        let edge_col = edges.iter().map(|&(_, c)| c).collect();
        Components {
            comp_rows,
            rows,
            comp_cols,
            cols,
            row_edges,
            edge_local_col,
            edge_col,
        }
    }

    /// Number of components.
    pub(crate) fn len(&self) -> usize {
        self.comp_rows.len() - 1
    }

    /// Global column of edge `e`.
    pub(crate) fn edge_col(&self, e: usize) -> u32 {
        self.edge_col[e]
    }
}

/// Reusable scratch space for [`SparseAssigner::solve`].
#[derive(Debug, Default)]
pub(crate) struct SparseAssigner {
    u: Vec<i128>,
    v: Vec<i128>,
    dist: Vec<i128>,
    path: Vec<u32>,
    done: Vec<bool>,
    col4row: Vec<u32>,
    row4col: Vec<u32>,
    touched: Vec<u32>,
    visited: Vec<u32>,
    heap: BinaryHeap<Reverse<(i128, bool, u32)>>,
}

impl SparseAssigner {
    /// Minimum-cost assignment in which every row takes one of its edges or stays unassigned at
    /// cost 0; `cost[e]` (exact fixed point, negative) is the cost of edge `e` relative to
    /// leaving its row unassigned. Writes the chosen edge (or [`NONE`]) of every row that has
    /// edges into `edge_of_row`; other rows are left untouched.
    ///
    /// Returns whether the optimum is unique (no other assignment of the same cost exists), in
    /// which case it is necessarily the one SciPy finds on the dense problem.
    pub(crate) fn solve(
        &mut self,
        comps: &Components,
        cost: &[i128],
        edge_of_row: &mut [u32],
    ) -> bool {
        let mut unique = true;
        for k in 0..comps.len() {
            let rows = &comps.rows[comps.comp_rows[k]..comps.comp_rows[k + 1]];
            let cols = &comps.cols[comps.comp_cols[k]..comps.comp_cols[k + 1]];
            if rows.len() == 1 {
                // A single row takes its cheapest edge if that beats staying unassigned.
                let r = rows[0] as usize;
                let (mut best, mut second) = ((0i128, NONE), 0i128);
                let first = comps.row_edges[r];
                for (e, &c) in cost[first..comps.row_edges[r + 1]].iter().enumerate() {
                    if c < best.0 {
                        second = best.0;
                        best = (c, (first + e) as u32);
                    } else if c < second {
                        second = c;
                    }
                }
                unique &= best.0 < second;
                edge_of_row[r] = best.1;
            } else if cols.len() == 1 {
                // A single column goes to the row with the cheapest edge.
                let (mut best, mut second) = ((0i128, NONE as usize, NONE), 0i128);
                for &r in rows {
                    let r = r as usize;
                    edge_of_row[r] = NONE;
                    let first = comps.row_edges[r];
                    for (e, &c) in cost[first..comps.row_edges[r + 1]].iter().enumerate() {
                        if c < best.0 {
                            second = best.0;
                            best = (c, r, (first + e) as u32);
                        } else if c < second {
                            second = c;
                        }
                    }
                }
                unique &= best.0 < second;
                if best.1 != NONE as usize {
                    edge_of_row[best.1] = best.2;
                }
            } else {
                unique &= self.solve_general(comps, rows, cols.len(), cost, edge_of_row);
            }
        }
        unique
    }

    fn solve_general(
        &mut self,
        comps: &Components,
        rows: &[u32],
        nc: usize,
        cost: &[i128],
        edge_of_row: &mut [u32],
    ) -> bool {
        let nr = rows.len();
        // Columns 0..nc are real, nc + i is the private "unassigned" column of row i.
        let ncol = nc + nr;
        self.touched.clear();
        self.u.clear();
        self.u.resize(nr, 0);
        self.v.clear();
        self.v.resize(ncol, 0);
        self.dist.clear();
        self.dist.resize(ncol, i128::MAX);
        self.path.clear();
        self.path.resize(ncol, NONE);
        self.done.clear();
        self.done.resize(ncol, false);
        self.col4row.clear();
        self.col4row.resize(nr, NONE);
        self.row4col.clear();
        self.row4col.resize(ncol, NONE);
        for cur in 0..nr {
            self.heap.clear();
            self.visited.clear();
            let mut min_val = 0i128;
            let mut i = cur;
            let sink = loop {
                self.visited.push(i as u32);
                let r = rows[i] as usize;
                let ui = self.u[i];
                let edges = comps.row_edges[r]..comps.row_edges[r + 1];
                for (&j, &c) in comps.edge_local_col[edges.clone()].iter().zip(&cost[edges]) {
                    self.relax(j as usize, i, min_val + c - ui);
                }
                self.relax(nc + i, i, min_val - ui);
                let (d, j) = loop {
                    // The row's own "unassigned" column is always reachable, so the heap
                    // cannot run dry before a free column is found.
                    let Some(Reverse((d, _, j))) = self.heap.pop() else {
                        // Report "not unique" so that callers fall back to the exact solver.
                        unreachable_sink();
                        return false;
                    };
                    let j = j as usize;
                    if !self.done[j] && self.dist[j] == d {
                        break (d, j);
                    }
                };
                min_val = d;
                self.done[j] = true;
                if self.row4col[j] == NONE {
                    break j;
                }
                i = self.row4col[j] as usize;
            };
            // update dual variables
            self.u[cur] += min_val;
            for &i in &self.visited[1..] {
                let i = i as usize;
                self.u[i] += min_val - self.dist[self.col4row[i] as usize];
            }
            for &j in &self.touched {
                let j = j as usize;
                if self.done[j] {
                    self.v[j] -= min_val - self.dist[j];
                }
            }
            // augment
            let mut j = sink as u32;
            loop {
                let i = self.path[j as usize];
                self.row4col[j as usize] = i;
                std::mem::swap(&mut self.col4row[i as usize], &mut j);
                if i as usize == cur {
                    break;
                }
            }
            for &j in &self.touched {
                self.dist[j as usize] = i128::MAX;
                self.done[j as usize] = false;
            }
            self.touched.clear();
        }
        for (i, &r) in rows.iter().enumerate() {
            let j = self.col4row[i];
            let r = r as usize;
            edge_of_row[r] = (comps.row_edges[r]..comps.row_edges[r + 1])
                .find(|&e| comps.edge_local_col[e] == j)
                .map_or(NONE, |e| e as u32);
        }
        self.optimum_is_unique(comps, rows, nc, cost)
    }

    /// Whether the assignment just found is the only optimal one. With the final duals
    /// (feasible, tight on the assignment, zero on free columns), the optimal assignments are
    /// the row-perfect matchings on tight edges that leave only zero-dual columns free. Another
    /// one exists iff, in the digraph "row a can take row b's column over a tight edge", there is
    /// a cycle, or a path from a row whose column has a zero dual (it can be released) to a row
    /// with a tight edge to a free column.
    fn optimum_is_unique(
        &mut self,
        comps: &Components,
        rows: &[u32],
        nc: usize,
        cost: &[i128],
    ) -> bool {
        let nr = rows.len();
        // Arcs a -> b as CSR over local rows; reuse `visited` for targets.
        let mut arcs_ptr = vec![0usize; nr + 1];
        self.visited.clear();
        let mut end = vec![false; nr];
        for (a, &r) in rows.iter().enumerate() {
            let r = r as usize;
            let ua = self.u[a];
            let mine = self.col4row[a];
            let mut consider = |j: usize, c: i128, visited: &mut Vec<u32>| {
                if j as u32 == mine || c - ua - self.v[j] != 0 {
                    return;
                }
                match self.row4col[j] {
                    NONE => end[a] |= self.v[j] == 0,
                    b => visited.push(b),
                }
            };
            let edges = comps.row_edges[r]..comps.row_edges[r + 1];
            for (&j, &c) in comps.edge_local_col[edges.clone()].iter().zip(&cost[edges]) {
                consider(j as usize, c, &mut self.visited);
            }
            consider(nc + a, 0, &mut self.visited);
            arcs_ptr[a + 1] = self.visited.len();
        }
        // Reachability from releasable rows to rows that can take a free column.
        let mut seen = vec![false; nr];
        let mut stack: Vec<usize> = (0..nr)
            .filter(|&a| self.v[self.col4row[a] as usize] == 0)
            .collect();
        for &a in &stack {
            seen[a] = true;
        }
        while let Some(a) = stack.pop() {
            if end[a] {
                return false;
            }
            for &b in &self.visited[arcs_ptr[a]..arcs_ptr[a + 1]] {
                if !seen[b as usize] {
                    seen[b as usize] = true;
                    stack.push(b as usize);
                }
            }
        }
        // Cycle detection (iterative three-colour DFS).
        let mut state = vec![0u8; nr]; // 0 new, 1 on stack, 2 done
        let mut it = vec![0usize; nr];
        for s0 in 0..nr {
            if state[s0] != 0 {
                continue;
            }
            let mut dfs = vec![s0];
            state[s0] = 1;
            it[s0] = arcs_ptr[s0];
            while let Some(&a) = dfs.last() {
                if it[a] < arcs_ptr[a + 1] {
                    let b = self.visited[it[a]] as usize;
                    it[a] += 1;
                    match state[b] {
                        0 => {
                            state[b] = 1;
                            it[b] = arcs_ptr[b];
                            dfs.push(b);
                        }
                        1 => return false,
                        _ => {}
                    }
                } else {
                    state[a] = 2;
                    dfs.pop();
                }
            }
        }
        true
    }

    #[inline]
    fn relax(&mut self, j: usize, i: usize, base: i128) {
        if self.done[j] {
            return;
        }
        let r = base - self.v[j];
        if r < self.dist[j] {
            if self.dist[j] == i128::MAX {
                self.touched.push(j as u32);
            }
            self.dist[j] = r;
            self.path[j] = i as u32;
            self.heap
                .push(Reverse((r, self.row4col[j] != NONE, j as u32)));
        }
    }
}

#[cold]
fn unreachable_sink() {
    debug_assert!(false, "sparse assignment found no free column");
}

/// Size of a maximum matching of the bipartite graph with `n_rows` rows whose adjacency is
/// given in CSR form (`adj[ptr[r]..ptr[r + 1]]` are the columns of row `r`, all `< n_cols`).
/// Hopcroft–Karp, O(E √V).
pub(crate) fn max_matching(n_rows: usize, n_cols: usize, ptr: &[usize], adj: &[u32]) -> usize {
    let mut match_row = vec![NONE; n_rows];
    let mut match_col = vec![NONE; n_cols];
    let mut size = 0usize;
    // Greedy start.
    for r in 0..n_rows {
        for &c in &adj[ptr[r]..ptr[r + 1]] {
            if match_col[c as usize] == NONE {
                match_col[c as usize] = r as u32;
                match_row[r] = c;
                size += 1;
                break;
            }
        }
    }
    let inf = u32::MAX;
    let mut dist = vec![inf; n_rows];
    let mut queue = Vec::with_capacity(n_rows);
    let mut it = vec![0usize; n_rows];
    let mut stack: Vec<u32> = Vec::new();
    loop {
        // BFS from the free rows, layering the graph.
        queue.clear();
        for r in 0..n_rows {
            if match_row[r] == NONE {
                dist[r] = 0;
                queue.push(r as u32);
            } else {
                dist[r] = inf;
            }
        }
        let mut found = false;
        let mut head = 0;
        while head < queue.len() {
            let r = queue[head] as usize;
            head += 1;
            for &c in &adj[ptr[r]..ptr[r + 1]] {
                let m = match_col[c as usize];
                if m == NONE {
                    found = true;
                } else if dist[m as usize] == inf {
                    dist[m as usize] = dist[r] + 1;
                    queue.push(m);
                }
            }
        }
        if !found {
            break;
        }
        // DFS along the layers, iteratively.
        it.copy_from_slice(&ptr[..n_rows]);
        for start in 0..n_rows {
            if match_row[start] != NONE {
                continue;
            }
            stack.clear();
            stack.push(start as u32);
            let mut augmented = false;
            while let Some(&r) = stack.last() {
                let r = r as usize;
                if it[r] == ptr[r + 1] {
                    dist[r] = inf;
                    stack.pop();
                    continue;
                }
                let c = adj[it[r]];
                let m = match_col[c as usize];
                if m == NONE {
                    // Augment along the stack.
                    for k in (0..stack.len()).rev() {
                        let rr = stack[k] as usize;
                        let cc = adj[it[rr]];
                        match_col[cc as usize] = rr as u32;
                        match_row[rr] = cc;
                    }
                    augmented = true;
                    break;
                }
                if dist[m as usize] == dist[r] + 1 {
                    stack.push(m);
                } else {
                    it[r] += 1;
                }
            }
            if augmented {
                size += 1;
                for &r in &stack {
                    dist[r as usize] = inf;
                }
            }
        }
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_entries(c: &[&[f64]]) -> Vec<(u32, u32, f64)> {
        let mut e = Vec::new();
        for (i, row) in c.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                e.push((i as u32, j as u32, x));
            }
        }
        e
    }

    #[test]
    fn scipy_docstring_example() {
        let c: [&[f64]; 3] = [&[4.0, 1.0, 3.0], &[2.0, 0.0, 5.0], &[3.0, 2.0, 2.0]];
        let r = scipy_lsap(3, 3, &dense_entries(&c), 0.0).unwrap();
        assert_eq!(r, vec![(0, 1), (1, 0), (2, 2)]);
    }

    #[test]
    fn constant_matrix_gives_identity_and_transpose_is_sorted() {
        let r = scipy_lsap(3, 5, &[], 0.0).unwrap();
        assert_eq!(r, vec![(0, 0), (1, 1), (2, 2)]);
        let r = scipy_lsap(5, 2, &[(4, 0, -1.0)], 0.0).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.contains(&(4, 0)));
        assert!(r[0].0 < r[1].0);
        assert!(scipy_lsap(0, 4, &[], 0.0).unwrap().is_empty());
    }

    #[test]
    fn sparse_solver_finds_optimum() {
        // rows 0,1; cols 0,1: costs (0,0)=-3 (0,1)=-2 (1,0)=-2; optimum: (0,1),(1,0) = -4.
        let edges = [(0u32, 0u32), (0, 1), (1, 0)];
        let comps = Components::new(2, 2, &edges);
        assert_eq!(comps.len(), 1);
        let cost = [-3i128, -2, -2];
        let mut out = vec![NONE; 2];
        assert!(SparseAssigner::default().solve(&comps, &cost, &mut out));
        assert_eq!(out, vec![1, 2]);
        // With (1,0) cheap, row 1 is better left unassigned.
        let cost = [-3i128, -1, -1];
        let mut out = vec![NONE; 2];
        assert!(SparseAssigner::default().solve(&comps, &cost, &mut out));
        assert_eq!(out, vec![0, NONE]);
        // Symmetric costs: two optimal assignments.
        let comps = Components::new(2, 2, &[(0, 0), (0, 1), (1, 0), (1, 1)]);
        let mut out = vec![NONE; 2];
        assert!(!SparseAssigner::default().solve(&comps, &[-2, -2, -2, -2], &mut out));
        // Row 0 may swap its column for a free one of equal cost.
        let comps = Components::new(1, 2, &[(0, 0), (0, 1)]);
        assert!(!SparseAssigner::default().solve(&comps, &[-2, -2], &mut out));
    }

    #[test]
    fn hopcroft_karp_sizes() {
        // Row 0: {0,1}, row 1: {0}, row 2: {1}, row 3: {} -> max matching 2.
        let ptr = [0, 2, 3, 4, 4];
        let adj = [0, 1, 0, 1];
        assert_eq!(max_matching(4, 2, &ptr, &adj), 2);
        // Chain needing an augmenting path: row0:{0}, row1:{0,1}, row2:{1,2}
        let ptr = [0, 1, 3, 5];
        let adj = [0, 0, 1, 1, 2];
        assert_eq!(max_matching(3, 3, &ptr, &adj), 3);
        assert_eq!(max_matching(0, 0, &[0], &[]), 0);
    }
}
