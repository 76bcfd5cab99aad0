"""Train the default cytoseg nuclei model (Cellpose-style flow U-Net) on the CPU.

Usage (from the repository root, venv active):
    python models/nuclei/train/train.py            # full run, writes .cache/ckpt.pt
    python models/nuclei/train/train.py --steps 5  # timing test
    python models/nuclei/train/train.py --replay-lr ckpt.pt  # exact rerun of a budgeted run
    python models/nuclei/train/train.py --device cuda --steps 20000 --crop 224 \
        --scale-min 0.5 --scale-max 2.0               # the longer GPU run the model card proposes

Everything random is seeded (torch.manual_seed, numpy Generator), torch uses one thread by
default. The defaults (CPU, crop 128, scale jitter 0.75-1.33) are those of the shipped run.
On CUDA, cuDNN kernels may differ run to run in the last bits; augmentation stays on the CPU
(numpy/OpenCV) and is seeded as before.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
from net import FlowUNet, count_params  # noqa: E402


def loss_fn(y, cellprob, flows):
    """cellpose.train._loss_fn_seg: MSE(flows, 5*unit flows)/2 + BCEWithLogits(cellprob)."""
    loss = F.mse_loss(y[:, :2], 5.0 * flows) / 2.0
    return loss + F.binary_cross_entropy_with_logits(y[:, 2], cellprob)


def make_batch(idx, imgs, lbls, flows, rng, crop, augment=True, scale_range=(0.75, 1.33)):
    xs, cs, fs = [], [], []
    for i in idx:
        im, cp, fl = data.random_crop_augment(imgs[i], lbls[i], flows[i], rng, crop=crop,
                                              scale_range=scale_range)
        if augment:
            im = data.intensity_augment(im, rng)
        xs.append(im); cs.append(cp); fs.append(fl)
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(cs)),
            torch.from_numpy(np.stack(fs)))


def lr_at(step, progress, base, warmup):
    """Linear warmup over `warmup` steps, then cosine decay to 2% of base as progress -> 1."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, progress)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


def load_lr_trace(path: str) -> list[float]:
    """A per-step lr trace: a checkpoint's `lr_trace`, or a JSON list (optionally gzipped)
    as `lr_traces.py` writes them."""
    if path.endswith(".pt"):
        return list(torch.load(path, weights_only=False, map_location="cpu")["lr_trace"])
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    if not (isinstance(trace, list) and trace and all(isinstance(v, float) and v > 0 for v in trace)):
        raise SystemExit(f"{path}: not a per-step lr trace (a non-empty JSON list of positive floats)")
    return trace


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--scale-min", type=float, default=0.75,
                    help="scale jitter: each crop is resized by a log-uniform factor in [min, max]")
    ap.add_argument("--scale-max", type=float, default=1.33)
    ap.add_argument("--device", type=str, default="cpu", help="torch device: cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--hardware", type=str, default="2-core Intel Xeon CPU @ 2.50GHz, 1 torch thread, no GPU",
                    help="free-text hardware note, copied into the manifest by manifest.py")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", type=str, default="16,32,64,128")
    ap.add_argument("--ckpt-every-s", type=float, default=240)
    ap.add_argument("--budget-min", type=float, default=0.0,
                    help="wall-time budget of the training loop; >0: the cosine schedule runs on "
                         "progress = max(step/steps, elapsed/budget) and training stops at 1")
    ap.add_argument("--replay-lr", type=str, default=None,
                    help="per-step lr trace to replay (exact rerun of a budgeted run): a checkpoint "
                         "(.pt) or a committed trace (lr_traces/phaseN.json.gz, see lr_traces.py)")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after this many steps of this run (smoke tests of the recipe; the "
                         "schedule itself is unchanged)")
    ap.add_argument("--out", type=str, default=str(data.CACHE / "ckpt.pt"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", type=str, default=None,
                    help="start from this checkpoint's weights (fresh optimiser and lr schedule): "
                         "a continuation phase; the checkpoint's file name and step are recorded")
    args = ap.parse_args()
    if not 0 < args.scale_min <= args.scale_max:
        ap.error("need 0 < --scale-min <= --scale-max")
    scale_range = (args.scale_min, args.scale_max)
    dev = torch.device(args.device)

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    t0 = time.time()
    ids, imgs, lbls = data.load_npz()
    flows = data.cached_flows(lbls)
    tr = [k for k in range(len(ids)) if not data.is_val(k)]
    va = [k for k in range(len(ids)) if data.is_val(k)]
    nimgs = [data.normalize99(im) for im in imgs]
    print(f"data: {len(tr)} train / {len(va)} val images, loaded in {time.time()-t0:.1f}s", flush=True)

    # fixed validation crops (no intensity jitter) for a validation loss curve
    vrng = np.random.default_rng(12345)
    vbatches = [make_batch([va[(j * 8 + i) % len(va)] for i in range(8)], nimgs, lbls, flows,
                           vrng, args.crop, augment=False, scale_range=scale_range)
                for j in range(8)]

    widths = tuple(int(w) for w in args.widths.split(","))
    net = FlowUNet(nin=1, nout=3, widths=widths).to(dev, memory_format=torch.channels_last)
    print(f"params: {count_params(net)}", flush=True)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    step0 = 0
    if args.init:
        ck0 = torch.load(args.init, weights_only=False, map_location=dev)
        net.load_state_dict(ck0["model"])
        args.init_from = {"file": Path(args.init).name, "step": int(ck0["step"]),
                          "args": ck0.get("args", {})}
        print(f"initialised from {args.init} (step {ck0['step']})", flush=True)
        del ck0
    if args.resume and Path(args.out).exists():
        ck = torch.load(args.out, weights_only=False, map_location=dev)
        net.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"])
        step0 = ck["step"]; rng = ck["rng"]; torch.set_rng_state(ck["torch_rng"].cpu())
        print(f"resumed at step {step0}", flush=True)

    def save(step, final=False):
        ck = {"model": net.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng,
              "torch_rng": torch.get_rng_state(), "args": vars(args), "widths": widths,
              "params": count_params(net), "final": final, "lr_trace": lr_trace, "elapsed_s": time.time() - t0}
        tmp = Path(args.out).with_suffix(".tmp")
        torch.save(ck, tmp); tmp.replace(args.out)

    def val_loss():
        net.eval()
        with torch.no_grad():
            ls = [loss_fn(net(x.to(dev, memory_format=torch.channels_last)), c.to(dev), f.to(dev)).item()
                  for x, c, f in vbatches]
        net.train()
        return float(np.mean(ls))

    lr_trace = list(ck["lr_trace"]) if args.resume and step0 else []
    replay = None
    warm_end_min = 0.0
    if args.replay_lr:
        replay = load_lr_trace(args.replay_lr)
        if len(replay) <= step0:
            ap.error(f"--replay-lr {args.replay_lr} has {len(replay)} steps; this run starts at {step0}")
        args.steps, args.budget_min = len(replay), 0.0
    last = min(args.steps, step0 + args.stop_after) if args.stop_after > 0 else args.steps
    tlast, run = time.time(), []
    tstart = time.time()
    net.train()
    for step in range(step0, last):
        if replay is not None:
            lr = replay[step]
        else:
            el = (time.time() - tstart) / 60
            wsteps = max(1, args.steps - args.warmup)
            prog = (step - args.warmup) / wsteps
            if args.budget_min > 0:
                if el >= args.budget_min:
                    print(f"time budget reached at step {step}", flush=True)
                    break
                # fraction of the post-warmup time budget used so far
                tw = warm_end_min if step >= args.warmup else 0.0
                prog = max(prog, (el - tw) / max(1e-6, args.budget_min - tw))
            lr = lr_at(step, prog, args.lr, args.warmup)
        if step == args.warmup - 1:
            warm_end_min = (time.time() - tstart) / 60
        lr_trace.append(lr)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.choice(tr, size=args.batch)
        x, c, f = make_batch(idx, nimgs, lbls, flows, rng, args.crop, scale_range=scale_range)
        y = net(x.to(dev, memory_format=torch.channels_last))
        loss = loss_fn(y, c.to(dev), f.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.append(loss.item())
        if (step + 1) % 25 == 0:
            el = time.time() - tstart
            print(f"step {step+1}/{args.steps} loss {np.mean(run):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{el/(step+1-step0):.2f}s/step elapsed {el/60:.1f}min", flush=True)
            run = []
        if (step + 1) % 250 == 0:
            print(f"step {step+1} val_loss {val_loss():.4f}", flush=True)
        if time.time() - tlast > args.ckpt_every_s:
            save(step + 1); tlast = time.time()
    print(f"final val_loss {val_loss():.4f} after {len(lr_trace)} steps", flush=True)
    # a run cut short by --stop-after is not the end of its schedule
    save(len(lr_trace), final=not (args.stop_after > 0 and len(lr_trace) < args.steps))
    print(f"done in {(time.time()-t0)/60:.1f} min", flush=True)
    json.dump({"steps": len(lr_trace), "wall_s": time.time() - t0}, open(Path(args.out).parent / "train_done.json", "w"))


if __name__ == "__main__":
    main()
