"""Writes tests/fixtures/measure3d/*.npz: skimage.measure.regionprops_table (scikit-image 0.26)
on 3-D label volumes (the truth volumes of the committed 3-D flow cases: real DSB2018 nuclei
extruded through planes, balls and hollow shells, boxes on the faces, tiny objects; and
irregular blobs with flat, linear and single-voxel objects, whose solidity is inf) with a
smooth random intensity volume, for spacings (1, 1, 1) and (2, 0.5, 0.5).
`tests/measure_parity.rs` checks `cytoseg::core::measure::measure_volume` against them.

    python tests/parity/make_volume_measure_fixtures.py
"""
from pathlib import Path

import numpy as np
import skimage
from scipy import ndimage as ndi
from skimage.measure import regionprops_table

PROPS = ["label", "area", "centroid", "bbox", "equivalent_diameter_area", "axis_major_length",
         "axis_minor_length", "solidity", "extent", "intensity_mean", "intensity_min", "intensity_max",
         "intensity_std"]


def intensity_integrated(region, intensity):
    return np.sum(intensity[region])


root = Path(__file__).resolve().parents[1] / "fixtures"
out = root / "measure3d"
out.mkdir(exist_ok=True)
for old in out.glob("*.npz"):
    old.unlink()
rng = np.random.default_rng(2026)
cases = ["dsb_0_v0", "dsb_1_v0", "balls_0_v0", "balls_1_v0", "border_objects_v0", "tiny_objects_v0"]


def odd_shapes(seed=11):
    """Irregular blobs (connected components of thresholded smooth noise) and degenerate objects
    for solidity: one flat in a plane, a line, a single voxel, an L of two planes."""
    r = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(r.random((16, 40, 40)), 2.0)
    labels, _ = ndi.label(noise > np.quantile(noise, 0.8))
    labels = labels.astype(np.uint32)
    labels[:, :, 34:] = 0
    top = labels.max()
    labels[2, 2:7, 35:39] = top + 1  # flat: one plane
    labels[5:10, 8, 36] = top + 2  # a line along z
    labels[12, 20, 37] = top + 3  # one voxel
    labels[13, 25:28, 35:38] = top + 4  # an L: a 3×3 plate and one voxel above a corner
    labels[14, 25, 35] = top + 4
    return labels


for k, name in enumerate(cases + ["odd_shapes"]):
    if name == "odd_shapes":
        labels = odd_shapes()
    else:
        labels = np.load(root / "volume" / f"{name}.npz")["truth"].astype(np.uint32)
    intensity = ndi.gaussian_filter(rng.random(labels.shape), 1.5).astype(np.float32) * 1000
    spacing = (1.0, 1.0, 1.0) if k % 2 == 0 else (2.0, 0.5, 0.5)
    with np.errstate(divide="ignore"):  # solidity is inf where the 3-D hull fails (flat objects)
        t = regionprops_table(labels, intensity_image=intensity, properties=PROPS, spacing=spacing,
                              extra_properties=[intensity_integrated])
    cols = {c: np.asarray(v, np.float64) for c, v in t.items()}
    np.savez_compressed(out / f"{name}.npz", labels=labels, intensity=intensity,
                        spacing=np.array(spacing), columns=np.array(list(cols)),
                        **{f"col_{c}": v for c, v in cols.items()})
    print(f"{name}: {labels.shape}, spacing {spacing}, {len(cols['label'])} objects, skimage {skimage.__version__}")
