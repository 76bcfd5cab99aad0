"""Reference 3-D segmentation of one z-stack with Cellpose 4.2.1.1's own code around an ONNX
network (onnxruntime): the steps of CellposeModel.eval for a stack with do_3D=True or
stitch_threshold > 0 — normalize_img(norm3D=True), then the model's own _run_net (resize_image_3d
by anisotropy, run_3D on the YX/ZY/ZX planes, resize back; or run_net plane by plane) and
_compute_masks (3-D flows -> labels; or per-plane masks without size filter, stitch3D,
fill_holes_and_remove_small_masks). Only channel conversion is left out: convert_image pads to the
three channels of Cellpose's own network, cytoseg's models take their manifest's channels.

    python volume_pipeline_reference.py MODEL_DIR STACK.tif OUT.npz --mode 3d|stitch
        [--anisotropy A] [--diameter D] [--stitch-threshold T]
Writes labels (Z, Y, X) uint32, niter, and flows: (4, Z, Y, X) dZ, dY, dX, cellprob in 3-D mode,
(Z, 3, Y, X) dY, dX, cellprob per plane in stitching mode.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch
from cellpose import models, transforms

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_reference import OnnxNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("stack")
    ap.add_argument("out")
    ap.add_argument("--mode", choices=["3d", "stitch"], required=True)
    ap.add_argument("--anisotropy", type=float, default=None)
    ap.add_argument("--diameter", type=float, default=None)
    ap.add_argument("--stitch-threshold", type=float, default=0.25)
    a = ap.parse_args()
    torch.set_num_threads(2)
    m = json.loads((Path(a.model_dir) / "manifest.json").read_text())
    net = OnnxNet(Path(a.model_dir) / m["model"]["file"], m["input"]["name"], m["output"]["name"])
    # A model object with cytoseg's network and none of Cellpose's weights.
    model = models.CellposeModel.__new__(models.CellposeModel)
    model.net = net
    model.device = torch.device("cpu")
    model.backbone = "onnx"
    stack = tifffile.imread(a.stack).astype(np.float32)
    assert stack.ndim == 3, "expected a (Z, Y, X) one-channel stack"
    x = stack[..., None]
    x = transforms.normalize_img(x, normalize=True, norm3D=True,
                                 percentile=(m["normalization"]["low"], m["normalization"]["high"]))
    rescale = 1.0 if not a.diameter or a.diameter <= 0 else m["diameter"] / a.diameter
    do_3D = a.mode == "3d"
    dP, cellprob, _ = model._run_net(x, rescale=rescale, resample=True, augment=False, batch_size=8,
                                     tile_overlap=m["tiling"]["overlap"],
                                     bsize=m["tiling"]["tile_size"],
                                     anisotropy=a.anisotropy, do_3D=do_3D)
    niter = int(200 / rescale)
    d = m["mask_defaults"]
    masks = model._compute_masks(x.shape, dP, cellprob, flow_threshold=d["flow_threshold"],
                                 cellprob_threshold=d["cellprob_threshold"],
                                 min_size=d["min_size"], max_size_fraction=d["max_size_fraction"],
                                 niter=niter, stitch_threshold=0.0 if do_3D else a.stitch_threshold,
                                 do_3D=do_3D)
    if do_3D:
        flows = np.concatenate([dP, cellprob[None]]).astype(np.float32)
    else:
        flows = np.concatenate([dP, cellprob[None]]).transpose(1, 0, 2, 3).astype(np.float32)
    np.savez_compressed(a.out, flows=flows, labels=np.asarray(masks).astype(np.uint32),
                        niter=np.int64(niter))
    print(f"{a.stack} ({a.mode}): {int(masks.max())} masks, niter {niter}")


if __name__ == "__main__":
    main()
