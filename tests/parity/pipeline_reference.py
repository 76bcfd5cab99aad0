"""Reference segmentation of one image with Cellpose 4.2.1.1's own functions around an ONNX
network (onnxruntime): normalize_img, resize_image, core.run_net (padding, tiles, taper
blending), resize back, dynamics.resize_and_compute_masks. This is what cytoseg's pipeline must
reproduce.

    python pipeline_reference.py MODEL_DIR IMAGE OUT.npz [--diameter D] [--tile-size T] [--min-size M]
Writes flows (3, H, W) float32 = dY, dX, cellprob, labels (H, W) uint32, niter.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tifffile
import torch
from cellpose import core, dynamics, transforms


class OnnxNet:
    """The interface core.run_net expects of a Cellpose network, backed by onnxruntime."""

    def __init__(self, path, input_name, output_name):
        opts = ort.SessionOptions()
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inp, self.out = input_name, output_name
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def eval(self):
        return self

    def __call__(self, x):
        y = self.sess.run([self.out], {self.inp: x.numpy().astype(np.float32)})[0]
        return torch.from_numpy(y), torch.zeros((y.shape[0], 256))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("image")
    ap.add_argument("out")
    ap.add_argument("--diameter", type=float, default=None)
    ap.add_argument("--tile-size", type=int, default=None)
    ap.add_argument("--min-size", type=int, default=None, help="default: the manifest's")
    a = ap.parse_args()
    torch.set_num_threads(2)
    m = json.loads((Path(a.model_dir) / "manifest.json").read_text())
    net = OnnxNet(Path(a.model_dir) / m["model"]["file"], m["input"]["name"], m["output"]["name"])
    img = np.load(a.image) if a.image.endswith(".npy") else tifffile.imread(a.image)
    if img.ndim == 3:  # (H, W, C) -> mean over channels for the one-channel model
        img = img.astype(np.float32).mean(axis=-1)
    x = img.astype(np.float32)[:, :, None]
    Ly, Lx = x.shape[:2]
    x = transforms.normalize_img(x, normalize=True, percentile=(m["normalization"]["low"], m["normalization"]["high"]))
    rescale = 1.0 if not a.diameter or a.diameter <= 0 else m["diameter"] / a.diameter
    bsize = a.tile_size or m["tiling"]["tile_size"]
    yf, _ = core.run_net(net, x[np.newaxis], batch_size=8, augment=False,
                         tile_overlap=m["tiling"]["overlap"], bsize=bsize,
                         rsz=rescale if rescale != 1.0 else None)
    if rescale != 1.0:
        yf = transforms.resize_image(yf, Ly, Lx)
    cellprob = yf[..., -1]
    dP = yf[..., -3:-1].transpose((3, 0, 1, 2))
    niter = int(200 / rescale)
    d = m["mask_defaults"]
    masks = dynamics.resize_and_compute_masks(dP[:, 0], cellprob[0], niter=niter,
                                              cellprob_threshold=d["cellprob_threshold"],
                                              flow_threshold=d["flow_threshold"], resize=None,
                                              min_size=d["min_size"] if a.min_size is None else a.min_size,
                                              max_size_fraction=d["max_size_fraction"],
                                              device=torch.device("cpu"))
    flows = np.concatenate([dP[:, 0], cellprob[0][None]]).astype(np.float32)
    np.savez_compressed(a.out, flows=flows, labels=np.asarray(masks).astype(np.uint32), niter=np.int64(niter))
    print(f"{a.image}: {int(masks.max())} masks, niter {niter}")


if __name__ == "__main__":
    main()
