//! The forest: bagged decision trees of `smartcore` (CART, Gini), each grown on a bootstrap
//! sample of the objects and a random subset of the features (random subspaces), voting.
//!
//! smartcore's own `RandomForestClassifier` gives neither class probabilities nor access to its
//! trees, so the bagging lives here: it keeps each tree's in-bag rows for the out-of-bag
//! estimate, and the probability of a class is the fraction of trees voting for it.

use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

use crate::error::{Error, Result};

type Tree = DecisionTreeClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>>;

/// SplitMix64: a small seeded generator (reproducible forests without a `rand` dependency).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Shuffles `v` (Fisher–Yates).
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// One tree of the forest and the features (indices into the model's feature list) it sees.
#[derive(Debug, Serialize, Deserialize)]
struct Member {
    features: Vec<usize>,
    tree: Tree,
}

/// A trained forest.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forest {
    n_classes: usize,
    n_features: usize,
    members: Vec<Member>,
}

/// Features each tree sees: a third of them, rounded up (at least one).
pub fn features_per_tree(n_features: usize) -> usize {
    n_features.div_ceil(3).max(1)
}

fn matrix(x: &[Vec<f64>], rows: &[usize], features: &[usize]) -> Result<DenseMatrix<f64>> {
    let data: Vec<Vec<f64>> = rows
        .iter()
        .map(|&r| features.iter().map(|&f| x[r][f]).collect())
        .collect();
    DenseMatrix::from_2d_vec(&data).map_err(|e| Error::invalid(format!("forest input: {e}")))
}

impl Forest {
    /// Grows `trees` trees on rows `x` (all of one length, finite) with classes `y` (indices
    /// below `n_classes`). Returns the forest and, per row, the out-of-bag votes per class.
    pub fn fit(
        x: &[Vec<f64>],
        y: &[u32],
        n_classes: usize,
        trees: usize,
        seed: u64,
    ) -> Result<(Forest, Vec<Vec<u32>>)> {
        let n = x.len();
        let p = x.first().map_or(0, Vec::len);
        if n == 0 || p == 0 || y.len() != n || trees == 0 {
            return Err(Error::invalid(
                "a forest needs at least one object, one feature and one tree",
            ));
        }
        let m = features_per_tree(p);
        let mut rng = SplitMix::new(seed);
        let mut members = Vec::with_capacity(trees);
        let mut oob = vec![vec![0u32; n_classes]; n];
        let all: Vec<usize> = (0..p).collect();
        let several = y.iter().any(|&c| c != y[0]);
        for _ in 0..trees {
            // A bootstrap sample of one class grows no tree: drawn again (few objects only).
            let mut rows: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
            for _ in 0..64 {
                if !several || rows.iter().any(|&r| y[r] != y[rows[0]]) {
                    break;
                }
                rows = (0..n).map(|_| rng.below(n)).collect();
            }
            let mut feats = all.clone();
            rng.shuffle(&mut feats);
            feats.truncate(m);
            feats.sort_unstable();
            let yb: Vec<u32> = rows.iter().map(|&r| y[r]).collect();
            let params = DecisionTreeClassifierParameters {
                seed: Some(rng.next()),
                ..Default::default()
            };
            let tree = Tree::fit(&matrix(x, &rows, &feats)?, &yb, params)
                .map_err(|e| Error::invalid(format!("growing a tree: {e}")))?;
            let mut in_bag = vec![false; n];
            rows.iter().for_each(|&r| in_bag[r] = true);
            let out: Vec<usize> = (0..n).filter(|&r| !in_bag[r]).collect();
            let member = Member {
                features: feats,
                tree,
            };
            if !out.is_empty() {
                for (r, c) in out.iter().zip(member.votes(x, &out)?) {
                    oob[*r][c as usize] += 1;
                }
            }
            members.push(member);
        }
        Ok((
            Forest {
                n_classes,
                n_features: p,
                members,
            },
            oob,
        ))
    }

    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.members.len()
    }

    /// Checks a forest read from a file against the model's feature and class counts.
    pub fn check(&self, n_features: usize, n_classes: usize) -> Result<()> {
        if self.n_features != n_features || self.n_classes != n_classes {
            return Err(Error::invalid(format!(
                "the forest was grown on {} features and {} classes, the model lists {n_features} and {n_classes}",
                self.n_features, self.n_classes
            )));
        }
        if self.members.is_empty() {
            return Err(Error::invalid("the forest has no trees"));
        }
        if let Some(f) = self
            .members
            .iter()
            .flat_map(|m| &m.features)
            .find(|&&f| f >= n_features)
        {
            return Err(Error::invalid(format!(
                "a tree uses feature {f}, the model has {n_features}"
            )));
        }
        // Probe every tree once: a damaged tree must fail here, not while applying.
        self.probabilities(&[vec![0.0; n_features]]).map(|_| ())
    }

    /// Class probabilities (the fraction of trees voting for each class) of every row.
    pub fn probabilities(&self, x: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        let mut votes = vec![vec![0u32; self.n_classes]; x.len()];
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<usize> = (0..x.len()).collect();
        for m in &self.members {
            for (v, c) in votes.iter_mut().zip(m.votes(x, &rows)?) {
                *v.get_mut(c as usize)
                    .ok_or_else(|| Error::invalid("a tree votes for a class the model lacks"))? +=
                    1;
            }
        }
        let t = self.members.len() as f64;
        Ok(votes
            .into_iter()
            .map(|v| v.into_iter().map(|c| c as f64 / t).collect())
            .collect())
    }
}

impl Member {
    /// The class this tree votes for, for each of `rows`.
    fn votes(&self, x: &[Vec<f64>], rows: &[usize]) -> Result<Vec<u32>> {
        let mx = matrix(x, rows, &self.features)?;
        // A tree read from a damaged file may index out of its nodes: an error, not a crash.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.tree.predict(&mx)))
            .map_err(|_| Error::invalid("a tree of the forest is damaged"))?
            .map_err(|e| Error::invalid(format!("tree prediction: {e}")))
    }
}

/// Checks the trees of a forest as read from a model file (`forest` of the JSON), before it is
/// deserialised: every feature subset within `n_features`, every split within its tree's
/// features, every child after its parent (no cycles) and inside the tree, every output a class
/// of the tree and every class below `n_classes`. A damaged file then fails with a message
/// instead of reaching smartcore's indexing.
pub fn check_json(forest: &serde_json::Value, n_features: usize, n_classes: usize) -> Result<()> {
    let bad = |what: String| Error::invalid(format!("damaged forest: {what}"));
    let uint = |v: &serde_json::Value| v.as_u64().map(|x| x as usize);
    let members = forest["members"]
        .as_array()
        .ok_or_else(|| bad("no members".into()))?;
    for (m, member) in members.iter().enumerate() {
        let feats = member["features"]
            .as_array()
            .ok_or_else(|| bad(format!("tree {m} has no feature list")))?;
        if feats.is_empty()
            || feats
                .iter()
                .any(|f| uint(f).is_none_or(|f| f >= n_features))
        {
            return Err(bad(format!("tree {m} uses features the model lacks")));
        }
        let tree = &member["tree"];
        let classes = tree["classes"]
            .as_array()
            .ok_or_else(|| bad(format!("tree {m} has no classes")))?;
        if classes
            .iter()
            .any(|c| uint(c).is_none_or(|c| c >= n_classes))
        {
            return Err(bad(format!("tree {m} votes for classes the model lacks")));
        }
        let nodes = tree["nodes"]
            .as_array()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(format!("tree {m} has no nodes")))?;
        for (i, node) in nodes.iter().enumerate() {
            let output_ok = uint(&node["output"]).is_some_and(|o| o < classes.len());
            let child_ok = |c: &serde_json::Value| {
                c.is_null() || uint(c).is_some_and(|c| c > i && c < nodes.len())
            };
            let split_ok = (node["true_child"].is_null() && node["false_child"].is_null())
                || uint(&node["split_feature"]).is_some_and(|f| f < feats.len());
            if !(output_ok
                && child_ok(&node["true_child"])
                && child_ok(&node["false_child"])
                && split_ok)
            {
                return Err(bad(format!("tree {m}, node {i}")));
            }
        }
    }
    Ok(())
}

/// The class of highest probability (the first on ties) and that probability.
pub fn best(p: &[f64]) -> (usize, f64) {
    p.iter().enumerate().fold(
        (0, f64::NEG_INFINITY),
        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_classes_are_learned_and_oob_votes_exist() {
        let x: Vec<Vec<f64>> = (0..60)
            .map(|i| {
                vec![
                    (i % 2) as f64 * 10.0 + (i as f64 * 0.37).sin(),
                    i as f64 * 0.1,
                ]
            })
            .collect();
        let y: Vec<u32> = (0..60).map(|i| (i % 2) as u32).collect();
        let (f, oob) = Forest::fit(&x, &y, 2, 25, 7).unwrap();
        let p = f.probabilities(&x).unwrap();
        for (row, want) in p.iter().zip(&y) {
            assert_eq!(best(row).0, *want as usize);
        }
        assert!(oob.iter().filter(|v| v.iter().sum::<u32>() > 0).count() > 50);
        f.check(2, 2).unwrap();
        assert!(f.check(3, 2).is_err());
        let mut v = serde_json::to_value(&f).unwrap();
        check_json(&v, 2, 2).unwrap();
        assert!(check_json(&v, 2, 1).is_err(), "class 1 is beyond one class");
        v["members"][0]["tree"]["nodes"][0]["true_child"] = 0.into();
        let e = check_json(&v, 2, 2).unwrap_err().to_string();
        assert!(e.contains("tree 0, node 0"), "{e}");
        v["members"][0]["features"] = serde_json::json!([5]);
        assert!(check_json(&v, 2, 2).is_err());
    }
}
