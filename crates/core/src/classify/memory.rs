//! Training and classifying in memory: images and label images as a host holds them (napari
//! layers, ImageJ images), objects picked by the user, no output folder.
//!
//! The features are those a `cytoseg segment` run writes to `<stem>_objects.csv`, computed by
//! the same function ([`crate::batch::objects_table`]) and read back through the same table
//! text, plus the same texture: a model trained here applies to segment output folders
//! ([`super::apply_folder`]) and one trained on a folder ([`super::train`]) applies here.
//!
//! **Training data hashes** of a model trained in memory: `training.labels` is the picks
//! (`path` `"picks"`, SHA-256 of the picks as the CSV text `image,label,class` followed by one
//! line per pick, in order), `training.tables` one entry per image with picks (`path` its
//! name, SHA-256 of its samples, packed, little-endian, followed by its labels as
//! little-endian `u32`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::forest::best;
use super::{Classifier, Example, FileHash, ObjectsTable, Origin, TrainOptions, TrainingData, fit};
use crate::error::{Error, Result};
use crate::image::{ImageData, Stack};
use crate::measure::csv_field;

/// A user's pick: the object `label` is of class `class`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// The object's label in the sample's label image (not 0: background).
    pub label: u32,
    /// Its class name.
    pub class: String,
}

/// An image with its label image and the user's picks, to train on in memory.
#[derive(Debug, Clone, Copy)]
pub struct LabelledImage<'a> {
    /// A name for messages and the model's training record (unique among the samples).
    pub name: &'a str,
    /// The image: one plane (2-D), any number of channels; its calibration gives the units.
    pub stack: &'a Stack,
    /// Its labels, `height × width`, row-major (0 = background).
    pub labels: &'a [u32],
    /// The picked objects; picking an object twice with the same class counts once.
    pub picks: &'a [Pick],
}

/// The class a classifier gives one object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectClass {
    /// The object's label.
    pub label: u32,
    /// Index of its class in [`Classifier::classes`]; `None` when a feature is not finite.
    pub class: Option<usize>,
    /// Probability of that class (NaN when unclassified).
    pub probability: f64,
    /// Probability of every class, in model order (NaN when unclassified).
    pub probabilities: Vec<f64>,
}

/// Checks that `labels` fit the one-plane `stack`; `what` names them in the error.
fn check_shapes(what: &str, stack: &Stack, labels: &[u32]) -> Result<()> {
    if stack.planes.len() != 1 {
        return Err(Error::shape(format!(
            "{what}: the image has {} planes; the classifier takes 2-D images (one plane, any channels)",
            stack.planes.len()
        )));
    }
    if labels.len() != stack.width * stack.height {
        return Err(Error::shape(format!(
            "{what}: {} labels for a {}×{} image (it needs width × height = {})",
            labels.len(),
            stack.width,
            stack.height,
            stack.width * stack.height
        )));
    }
    Ok(())
}

impl ObjectsTable {
    /// The objects table a `cytoseg segment` run writes for `stack` segmented into `labels`
    /// (one plane), with the texture of its objects, computed in memory by the batch engine's
    /// own function; `name` stands for the file in messages.
    pub fn measure(name: &str, stack: &Stack, labels: &[u32]) -> Result<Self> {
        check_shapes(name, stack, labels)?;
        let text = crate::batch::objects_table(stack, labels)?.to_csv();
        Self::from_text(Path::new(name), name, &text, stack, labels)
    }
}

/// SHA-256 of a sample's pixels (packed, little-endian) followed by its labels (`u32` LE).
fn sample_sha256(stack: &Stack, labels: &[u32]) -> String {
    let mut h = Sha256::new();
    for p in &stack.planes {
        match &p.data {
            ImageData::U8(d) => h.update(d),
            ImageData::U16(d) => d.iter().for_each(|v| h.update(v.to_le_bytes())),
            ImageData::F32(d) => d.iter().for_each(|v| h.update(v.to_le_bytes())),
        }
    }
    labels.iter().for_each(|v| h.update(v.to_le_bytes()));
    format!("{:x}", h.finalize())
}

/// Trains a classifier on the picked objects of in-memory images: the same features, checks,
/// cross-validation and model file as [`super::train`] on a segment output folder.
///
/// Errors name the sample and pick (0-based) at fault: a pick on the background (label 0) or
/// on a label that is no object of the label image, an object picked with two classes. Fewer
/// than two classes, labels that do not fit their image, images of several planes and samples
/// sharing a name are refused too.
pub fn train_images(samples: &[LabelledImage], opts: &TrainOptions) -> Result<Classifier> {
    super::check_options(opts)?;
    let mut names = BTreeSet::new();
    for s in samples {
        if !names.insert(s.name) {
            return Err(Error::invalid(format!(
                "two samples are named '{}': give each image a unique name",
                s.name
            )));
        }
        check_shapes(&format!("sample '{}'", s.name), s.stack, s.labels)?;
    }
    let mut tables = Vec::new();
    let mut used = Vec::new();
    let mut examples = Vec::new();
    for s in samples.iter().filter(|s| !s.picks.is_empty()) {
        let table = tables.len();
        // label → (class, pick) of the first pick of each object.
        let mut seen: HashMap<u32, (&str, usize)> = HashMap::new();
        for (i, p) in s.picks.iter().enumerate() {
            let origin = Origin::Pick(s.name, i);
            if p.label == 0 {
                return Err(origin
                    .error("on the background (label 0): pick a point inside an object".into()));
            }
            if p.class.trim().is_empty() {
                return Err(origin.error("the class name is empty".into()));
            }
            match seen.get(&p.label) {
                Some(&(c, _)) if c == p.class => continue,
                Some(&(c, j)) => {
                    return Err(origin.error(format!(
                        "object {} is picked as '{}' here and as '{c}' by pick {j}",
                        p.label, p.class
                    )));
                }
                None => {
                    seen.insert(p.label, (&p.class, i));
                }
            }
            examples.push(Example {
                table,
                label: p.label,
                class: &p.class,
                origin,
            });
        }
        tables.push(ObjectsTable::measure(s.name, s.stack, s.labels)?);
        used.push(s);
    }
    let mut picks_csv = String::from("image,label,class\n");
    for s in &used {
        for p in s.picks {
            picks_csv += &format!(
                "{},{},{}\n",
                csv_field(s.name),
                p.label,
                csv_field(&p.class)
            );
        }
    }
    fit(
        &tables,
        &examples,
        opts,
        |m| Error::invalid(format!("picks: {m}")),
        |per_class| {
            Ok(TrainingData {
                labels: FileHash {
                    path: "picks".into(),
                    sha256: format!("{:x}", Sha256::digest(picks_csv.as_bytes())),
                },
                tables: used
                    .iter()
                    .map(|s| FileHash {
                        path: s.name.to_string(),
                        sha256: sample_sha256(s.stack, s.labels),
                    })
                    .collect(),
                objects_per_class: per_class,
            })
        },
    )
}

/// Classifies every object of `labels` (one plane of `stack`'s size), in label order — the
/// classes [`super::apply_folder`] writes for the same image and labels.
pub fn classify_image(
    model: &Classifier,
    stack: &Stack,
    labels: &[u32],
) -> Result<Vec<ObjectClass>> {
    let table = ObjectsTable::measure("image", stack, labels)?;
    let x = table.features(&model.features)?;
    let probs = model.predict(&x)?;
    let k = model.classes.len();
    Ok(probs
        .into_iter()
        .enumerate()
        .map(|(r, p)| {
            let label = table.label(r).unwrap_or(0);
            match p {
                Some(p) => {
                    let (c, pc) = best(&p);
                    ObjectClass {
                        label,
                        class: Some(c),
                        probability: pc,
                        probabilities: p,
                    }
                }
                None => ObjectClass {
                    label,
                    class: None,
                    probability: f64::NAN,
                    probabilities: vec![f64::NAN; k],
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageView, Pixels};
    use crate::measure::Calibration;

    /// A 40×40 image of 8 square objects (labels 1..=8): odd ones bright and flat, even ones
    /// dim and striped.
    fn sample() -> (Stack, Vec<u32>) {
        let (w, h) = (40, 40);
        let mut px = vec![10u8; w * h];
        let mut labels = vec![0u32; w * h];
        for l in 1..=8u32 {
            let (r0, c0) = (
                ((l - 1) / 4) as usize * 20 + 3,
                ((l - 1) % 4) as usize * 10 + 2,
            );
            for r in r0..r0 + 6 + l as usize % 3 {
                for c in c0..c0 + 6 {
                    labels[r * w + c] = l;
                    px[r * w + c] = if l % 2 == 1 {
                        200
                    } else {
                        60 + 40 * (r % 2) as u8
                    };
                }
            }
        }
        let view = ImageView::packed(Pixels::U8(&px), w, h, 1).unwrap();
        (
            Stack::single(view.to_image(), Calibration::default()),
            labels,
        )
    }

    fn picks(spec: &[(u32, &str)]) -> Vec<Pick> {
        spec.iter()
            .map(|&(label, class)| Pick {
                label,
                class: class.into(),
            })
            .collect()
    }

    const OPTS: TrainOptions = TrainOptions {
        trees: 20,
        seed: 1,
        folds: 2,
    };

    #[test]
    fn trains_on_picks_and_classifies_every_object() {
        let (stack, labels) = sample();
        let p = picks(&[
            (1, "a"),
            (3, "a"),
            (5, "a"),
            (2, "b"),
            (4, "b"),
            (6, "b"),
            (6, "b"),
        ]);
        let s = [LabelledImage {
            name: "x",
            stack: &stack,
            labels: &labels,
            picks: &p,
        }];
        let m = train_images(&s, &OPTS).unwrap();
        assert_eq!(m.classes, ["a", "b"]);
        assert_eq!(
            m.training.objects_per_class["b"], 3,
            "a repeated pick counts once"
        );
        assert_eq!(m.training.tables[0].path, "x");
        assert_eq!(m.training.tables[0].sha256, sample_sha256(&stack, &labels));
        let got = classify_image(&m, &stack, &labels).unwrap();
        let labels_out: Vec<u32> = got.iter().map(|o| o.label).collect();
        assert_eq!(labels_out, (1..=8).collect::<Vec<_>>());
        for o in &got {
            let want = usize::from(o.label % 2 == 0);
            assert_eq!(o.class, Some(want), "object {}", o.label);
            assert_eq!(o.probabilities.len(), 2);
            assert_eq!(o.probability, o.probabilities[want]);
        }
        // Another image: the hash follows the pixels.
        let mut other = stack.clone();
        if let ImageData::U8(d) = &mut other.planes[0].data {
            d[0] = 11;
        }
        assert_ne!(
            sample_sha256(&other, &labels),
            sample_sha256(&stack, &labels)
        );
    }

    #[test]
    fn bad_picks_and_shapes_are_named() {
        let (stack, labels) = sample();
        let fail = |p: &[(u32, &str)], labels: &[u32], name: &str| {
            let p = picks(p);
            let s = [LabelledImage {
                name,
                stack: &stack,
                labels,
                picks: &p,
            }];
            train_images(&s, &OPTS).unwrap_err().to_string()
        };
        let good = [(1, "a"), (3, "a"), (2, "b"), (4, "b")];
        let mut p = good.to_vec();
        p.push((0, "a"));
        let e = fail(&p, &labels, "cells");
        assert!(
            e.contains("sample 'cells', pick 4") && e.contains("background"),
            "{e}"
        );
        let mut p = good.to_vec();
        p.insert(1, (77, "b"));
        let e = fail(&p, &labels, "cells");
        assert!(
            e.contains("sample 'cells', pick 1") && e.contains("no object 77"),
            "{e}"
        );
        let mut p = good.to_vec();
        p.push((1, "b"));
        let e = fail(&p, &labels, "cells");
        assert!(
            e.contains("pick 4") && e.contains("picked as 'b' here and as 'a' by pick 0"),
            "{e}"
        );
        let e = fail(&[(1, "a"), (2, "a"), (3, "a")], &labels, "cells");
        assert!(e.contains("only one class"), "{e}");
        let e = fail(&good, &labels[1..], "cells");
        assert!(
            e.contains("sample 'cells'") && e.contains("1599 labels for a 40×40"),
            "{e}"
        );
        let e = fail(&good[..3], &labels, "cells");
        assert!(e.contains("class 'b' has one labelled object"), "{e}");
        let e = train_images(&[], &OPTS).unwrap_err().to_string();
        assert!(e.contains("no labelled objects"), "{e}");
        let e = classify_image(
            &train_images(
                &[LabelledImage {
                    name: "x",
                    stack: &stack,
                    labels: &labels,
                    picks: &picks(&good),
                }],
                &OPTS,
            )
            .unwrap(),
            &stack,
            &labels[..10],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("10 labels for a 40×40"), "{e}");
    }
}
