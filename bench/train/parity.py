#!/usr/bin/env python3
"""PyTorch parity of `nclab train`: the same network, data, optimiser and schedule trained by
PyTorch and by nclab, NC1 of the training features and test accuracy side by side.

Both sides: the first PER_CLASS digits of each class of the embedded MNIST-10k training set
(crates/nc-data/data/mnist-10k), no validation split, pixels / 255 normalised by the mean and
(population) standard deviation of those digits; the whole embedded test set; an MLP `depth` x (Linear -> [BatchNorm1d] -> ReLU) with a linear head; SGD lr
0.1, momentum 0.9, dampening 0, weight decay 5e-4 on every parameter, global gradient-norm
clipping at 2, batch 128 reshuffled every epoch (last batch kept); loss CE or focal
(gamma 3, mean over the batch); schedule `step` (x0.1 after int(3E/7) and int(5E/7), stepped at
the end of each epoch, as PyTorch's MultiStepLR) or `constant` (lr 0.1 throughout).
Initialisation: each side's default (uniform(+-1/sqrt(fan_in)) on both), each with its own
random generator, so the runs agree in law, not bit for bit.

Measured at epoch 0 and every EVAL_EVERY epochs, in eval mode (BatchNorm on running
statistics), on the un-augmented training digits: NC1 = tr(Sigma_W Sigma_B^+) / K
(docs/metrics.md; Sigma_B^+ keeps singular values of M above 1e-8 of the largest), and test
accuracy. nclab's numbers are read from its run directory (metrics.jsonl).

Usage (from the repository root, after `cargo build --release -p nclab`; PyTorch in
bench/.venv: `bench/.venv/bin/pip install torch`):
    bench/.venv/bin/python bench/train/parity.py [--epochs 400] [--configs bn-ce-step ...]
Prints a Markdown table and writes bench/out/parity/parity.json (every number of both sides).
"""
import argparse
import gzip
import json
import os
import pathlib
import struct
import subprocess
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
NCLAB = pathlib.Path(os.environ.get("NCLAB_BIN", ROOT / "target" / "release" / "nclab"))
MNIST = ROOT / "crates" / "nc-data" / "data" / "mnist-10k"
OUT = ROOT / "bench" / "out" / "parity"

# name -> (hidden units, depth, BatchNorm, loss, schedule)
CONFIGS = {
    "bn-ce-step": (1024, 2, True, "ce", "step"),
    "bn-fl-step": (1024, 2, True, "fl", "step"),
    "bn-ce-constant": (1024, 2, True, "ce", "constant"),
    "bn-fl-constant": (1024, 2, True, "fl", "constant"),
    "plain-ce-step": (512, 2, False, "ce", "step"),
    "plain-fl-step": (512, 2, False, "fl", "step"),
}


def read_idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    magic = struct.unpack(">I", b[:4])[0]
    if magic == 2051:
        n, r, c = struct.unpack(">III", b[4:16])
        return np.frombuffer(b[16:], np.uint8).reshape(n, r * c)
    return np.frombuffer(b[8:], np.uint8).astype(np.int64)


def load(per_class):
    x = read_idx(MNIST / "train-images-idx3-ubyte.gz")
    y = read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    keep = np.concatenate([np.flatnonzero(y == k)[:per_class] for k in range(10)])
    keep.sort()  # file order within and across classes, as nclab's "first N per class"
    xt = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    yt = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    train = x[keep].astype(np.float64) / 255.0
    mean, std = train.mean(), train.std()
    norm = lambda a: torch.tensor(((a.astype(np.float64) / 255.0 - mean) / std), dtype=torch.float32)
    return norm(x[keep]), torch.tensor(y[keep]), norm(xt), torch.tensor(yt)


class Mlp(nn.Module):
    def __init__(self, hidden, depth, batch_norm):
        super().__init__()
        layers, fan_in = [], 784
        for _ in range(depth):
            layers.append(nn.Linear(fan_in, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.ReLU())
            fan_in = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        h = self.body(x)
        return h, self.head(h)


def loss_of(kind, logits, y):
    logp = F.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0]
    if kind == "ce":
        return -logp.mean()
    return -(((1 - logp.exp()) ** 3) * logp).mean()


def nc1(h, y, k=10):
    h = h.astype(np.float64)
    mu = np.stack([h[y == c].mean(0) for c in range(k)])
    centred = h - mu[y]
    sigma_w = centred.T @ centred / len(h)
    m = (mu - h.mean(0)).T  # d x K
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    kept = s > 1e-8 * s[0]
    # Sigma_B = M M^T / K, so Sigma_B^+ = K U diag(1/s^2) U^T on the kept directions.
    uk = u[:, kept]
    return float(np.trace(uk.T @ sigma_w @ uk @ np.diag(k / s[kept] ** 2)) / k)


def torch_run(cfg, epochs, eval_every, seed, data):
    hidden, depth, bn, loss, schedule = cfg
    torch.manual_seed(seed)
    x, y, xt, yt = data
    model = Mlp(hidden, depth, bn)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    milestones = [int(3 * epochs / 7), int(5 * epochs / 7)] if schedule == "step" else []
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    rows = []

    def evaluate(epoch):
        model.eval()
        with torch.no_grad():
            h, _ = model(x)
            _, logits = model(xt)
        rows.append({"epoch": epoch, "train_nc1": nc1(h.numpy(), y.numpy()),
                     "test_acc": float((logits.argmax(1) == yt).float().mean())})
        model.train()

    evaluate(0)
    for epoch in range(1, epochs + 1):
        for batch in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            _, logits = model(x[batch])
            loss_of(loss, logits, y[batch]).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            opt.step()
        sched.step()
        if epoch % eval_every == 0 or epoch == epochs:
            evaluate(epoch)
    return rows


def nclab_run(name, cfg, epochs, eval_every, seed, per_class):
    hidden, depth, bn, loss, schedule = cfg
    out = OUT / "nclab" / name
    if out.exists():
        import shutil
        shutil.rmtree(out)  # a fresh run, not a resumed one
    command = [str(NCLAB), "train", "--data", "mnist", "--model", "mlp", "--depth", str(depth),
               "--hidden", str(hidden), "--per-class", str(per_class), "--val-fraction", "0",
               "--epochs", str(epochs), "--loss", loss, "--eval-every", str(eval_every),
               "--seed", str(seed), "--out", str(out)]
    if bn:
        command.append("--batch-norm")
    if schedule == "constant":
        command += ["--milestones", str(10 * epochs)]  # never reached: lr 0.1 throughout
    subprocess.run(command, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{"epoch": int(r["epoch"]), "train_nc1": r["train_nc1"], "test_acc": r["test_acc"]}
            for r in rows if int(r["epoch"]) % eval_every == 0 or int(r["epoch"]) == epochs]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    data = load(args.per_class)
    results = {}
    for name in args.configs:
        cfg = CONFIGS[name]
        clock = time.perf_counter()
        ours = nclab_run(name, cfg, args.epochs, args.eval_every, args.seed, args.per_class)
        ours_s = time.perf_counter() - clock
        clock = time.perf_counter()
        theirs = torch_run(cfg, args.epochs, args.eval_every, args.seed, data)
        theirs_s = time.perf_counter() - clock
        results[name] = {"nclab": ours, "pytorch": theirs, "seconds": {"nclab": ours_s, "pytorch": theirs_s}}
        (OUT / "parity.json").write_text(json.dumps(results, indent=1))
    print(f"{args.epochs} epochs, {args.per_class} digits per class, seed {args.seed}, torch {torch.__version__}\n")
    print("| config | epoch | train NC1 nclab | train NC1 PyTorch | test acc nclab | test acc PyTorch |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        for a, b in zip(r["nclab"], r["pytorch"]):
            assert a["epoch"] == b["epoch"], (a, b)
            print(f"| {name} | {a['epoch']} | {a['train_nc1']:.4g} | {b['train_nc1']:.4g} | "
                  f"{a['test_acc']:.4f} | {b['test_acc']:.4f} |")


if __name__ == "__main__":
    main()
