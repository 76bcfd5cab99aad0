"""Seconds per training step of the PyTorch recipe (net.py, train.py's loss, AdamW as train.py
sets it up) on a fixed batch of `batch x crop^2` random crops: the reference that
`scripts/bench_train.sh` compares cytoseg's native trainer with, in the same run.

    python models/nuclei/train/bench_step.py [steps] [batch] [crop] [threads]

Prints one line of JSON: median and all step times, peak resident memory.
"""
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from net import FlowUNet  # noqa: E402
from train import loss_fn  # noqa: E402


def main():
    a = [int(v) for v in sys.argv[1:]]
    steps, batch, crop, threads = (a + [10, 8, 128, 2][len(a):])[:4]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = FlowUNet(nin=1, nout=3).to(memory_format=torch.channels_last)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    x = torch.rand(batch, 1, crop, crop).to(memory_format=torch.channels_last)
    flows = torch.rand(batch, 2, crop, crop) * 2 - 1
    cellprob = (torch.rand(batch, crop, crop) < 0.3).float()
    net.train()
    times = []
    for i in range(steps + 1):  # one warm-up step, not counted
        t0 = time.perf_counter()
        y = net(x)
        loss = loss_fn(y, cellprob, flows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i > 0:
            times.append(time.perf_counter() - t0)
    s = sorted(times)
    print(json.dumps({"impl": "pytorch " + torch.__version__, "batch": batch, "crop": crop,
                      "threads": threads, "median_s": round(s[len(s) // 2], 4),
                      "steps_s": [round(t, 4) for t in times],
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
