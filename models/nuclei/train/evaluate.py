"""Validate a checkpoint (or the exported ONNX) on the full validation images.

Pipeline (the one cytoseg's Rust engine reproduces): per-image 1/99 percentile
normalization -> zero-pad H, W (bottom/right) to a multiple of 16 -> network ->
crop -> cellpose.dynamics.compute_masks(dP, cellprob, niter=200, cellprob_threshold=0.0,
flow_threshold=0.4, min_size=15) -> stardist.matching.matching_dataset(thresh=[0.5,0.75,0.9]).

    python models/nuclei/train/evaluate.py                    # torch checkpoint .cache/ckpt.pt
    python models/nuclei/train/evaluate.py --onnx models/nuclei/model.onnx
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
from net import FlowUNet  # noqa: E402

MASK_KW = dict(niter=200, cellprob_threshold=0.0, flow_threshold=0.4, min_size=15)


def pad16(x):
    H, W = x.shape
    Hp, Wp = -(-H // 16) * 16, -(-W // 16) * 16
    return np.pad(x, ((0, Hp - H), (0, Wp - W)))


def load_torch(ckpt=data.CACHE / "ckpt.pt"):
    ck = torch.load(ckpt, weights_only=False, map_location="cpu")
    net = FlowUNet(nin=1, nout=3, widths=tuple(ck["widths"]))
    net.load_state_dict(ck["model"])
    net.eval()
    return net, ck


def make_runner(net=None, onnx_path=None):
    if onnx_path is not None:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        return lambda x: sess.run(["flows"], {"image": x})[0]

    def run(x):
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()
    return run


def predict(run, img):
    """img: raw H x W -> (flows (3,H,W) float32 [dY, dX, cellprob logit])."""
    H, W = img.shape
    x = pad16(data.normalize99(img))[None, None].astype(np.float32)
    return run(x)[0, :, :H, :W]


def to_masks(y, **kw):
    from cellpose import dynamics
    p = dict(MASK_KW, **kw)
    return dynamics.compute_masks(y[:2], y[2], device=torch.device("cpu"), **p)


def score(truths, preds):
    from stardist.matching import matching_dataset
    res = matching_dataset(truths, preds, thresh=[0.5, 0.75, 0.9], by_image=False, show_progress=False)
    return {f"{r.thresh}": {k: float(getattr(r, k)) for k in
                             ("accuracy", "f1", "precision", "recall", "panoptic_quality",
                              "mean_true_score", "tp", "fp", "fn")} for r in res}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=str(data.CACHE / "ckpt.pt"))
    ap.add_argument("--onnx", default=None)
    ap.add_argument("--cellprob-threshold", type=float, default=0.0)
    ap.add_argument("--flow-threshold", type=float, default=0.4)
    ap.add_argument("--limit", type=int, default=0, help="only the first N validation images (smoke test)")
    ap.add_argument("--out", default=None, help="write metrics json here")
    ap.add_argument("--save-flows", default=None, help="npz of val network outputs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = None
    if args.onnx is None:
        net, ck = load_torch(args.ckpt)
        print(f"checkpoint step {ck['step']} final={ck['final']}", flush=True)
    run = make_runner(net, args.onnx)
    ids, imgs, lbls = data.load_npz()
    va = [k for k in range(len(ids)) if data.is_val(k)]
    if args.limit:
        va = va[:args.limit]
    t0 = time.time()
    outs = {k: predict(run, imgs[k]) for k in va}
    t1 = time.time()
    preds = [to_masks(outs[k], cellprob_threshold=args.cellprob_threshold,
                      flow_threshold=args.flow_threshold) for k in va]
    t2 = time.time()
    res = score([lbls[k] for k in va], preds)
    print(f"net {t1-t0:.1f}s, masks {t2-t1:.1f}s on {len(va)} images", flush=True)
    for t, r in res.items():
        print(f"IoU {t}: AP {r['accuracy']:.4f} F1 {r['f1']:.4f} P {r['precision']:.4f} "
              f"R {r['recall']:.4f} PQ {r['panoptic_quality']:.4f}", flush=True)
    if args.save_flows:
        np.savez_compressed(args.save_flows, **{f"f{k}": outs[k] for k in va})
    if args.out:
        json.dump({"backend": "onnxruntime" if args.onnx else "torch", "n_images": len(va),
                   "cellprob_threshold": args.cellprob_threshold,
                   "flow_threshold": args.flow_threshold, "metrics": res},
                  open(args.out, "w"), indent=2)


if __name__ == "__main__":
    main()
