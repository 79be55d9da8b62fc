"""PyTorch peer of crates/nc-train/examples/bench_train.rs (CPU, 2 threads).

(a) median time of one training step (forward, backward, clip_grad_norm_(2), SGD lr/momentum 0.9/
    dampening 0/weight decay 5e-4) at batch 128 for the MLP 784-512-512-10 and ResNet-18 width
    0.25 (CIFAR stem) on 3x32x32 input;
(b) wall time of one MLP epoch on MNIST-10k (8,000 digits, batch 128, last batch kept) plus one
    evaluation of train and test accuracy and features.

usage: python torch_bench.py MNIST_DIR [--steps 30]
"""
import gzip, os, struct, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(2)


def read_idx(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        b = f.read()
    magic = struct.unpack(">I", b[:4])[0]
    if magic == 2051:
        n, r, c = struct.unpack(">III", b[4:16])
        return np.frombuffer(b[16:], np.uint8).reshape(n, 1, r, c)
    n = struct.unpack(">I", b[4:8])[0]
    return np.frombuffer(b[8:], np.uint8).astype(np.int64)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.head = nn.Linear(784, 512), nn.Linear(512, 512), nn.Linear(512, 10)

    def forward(self, x):
        h = F.relu(self.l2(F.relu(self.l1(x.flatten(1)))))
        return h, self.head(h)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.sc = None
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        o = F.relu(self.b1(self.c1(x)))
        o = self.b2(self.c2(o))
        return F.relu(o + (x if self.sc is None else self.sc(x)))


class ResNet18(nn.Module):
    def __init__(self, w=0.25, k=10):
        super().__init__()
        c0 = round(64 * w)
        self.stem, self.bn = nn.Conv2d(3, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0)
        blocks, cin = [], c0
        for i, p in enumerate([64, 128, 256, 512]):
            cout = round(p * w)
            for b in range(2):
                blocks.append(Block(cin, cout, 2 if i > 0 and b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, k)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.stem(x)))).mean((2, 3))
        return h, self.head(h)


def opt_for(m):
    return torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, dampening=0, weight_decay=5e-4)


def step(m, opt, x, y):
    opt.zero_grad(set_to_none=True)
    _, z = m(x)
    F.cross_entropy(z, y).backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 2.0)
    opt.step()


def step_time(m, shape, steps):
    torch.manual_seed(0)
    x = torch.rand(128, *shape)
    y = torch.arange(128) % 10
    opt = opt_for(m)
    ts = []
    for s in range(steps + 3):
        t = time.perf_counter()
        step(m, opt, x, y)
        if s >= 3:
            ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    d = sys.argv[1]
    steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 30
    f = lambda n: next(os.path.join(d, c) for c in (n, n + ".gz") if os.path.exists(os.path.join(d, c)))
    print(f"mlp_step_ms {step_time(Mlp(), (1, 28, 28), steps) * 1e3:.2f}")
    print(f"resnet18_w0.25_step_ms {step_time(ResNet18(), (3, 32, 32), min(steps, 10)) * 1e3:.1f}")

    t0 = time.perf_counter()
    xtr = torch.from_numpy(read_idx(f("train-images-idx3-ubyte")).astype(np.float32) / 255.0)
    ytr = torch.from_numpy(read_idx(f("train-labels-idx1-ubyte")))
    xte = torch.from_numpy(read_idx(f("t10k-images-idx3-ubyte")).astype(np.float32) / 255.0)
    yte = torch.from_numpy(read_idx(f("t10k-labels-idx1-ubyte")))
    torch.manual_seed(1)
    m = Mlp()
    opt = opt_for(m)
    perm = torch.randperm(len(ytr))
    for i in range(0, len(ytr), 128):
        idx = perm[i:i + 128]
        step(m, opt, xtr[idx], ytr[idx])
    with torch.no_grad():
        for x, y in ((xtr, ytr), (xte, yte)):
            hs, acc = [], 0
            for i in range(0, len(y), 1000):
                h, z = m(x[i:i + 1000])
                hs.append(h)
                acc += (z.argmax(1) == y[i:i + 1000]).sum().item()
            h = torch.cat(hs).double()
            # NC1 as in docs/metrics.md (for the work it costs; value unused)
            mu = torch.stack([h[y == k].mean(0) for k in range(10)])
            mg = h.mean(0)
            M = (mu - mg).T
            sw = ((h - mu[y]).T @ (h - mu[y])) / len(y)
            u, s, _ = torch.linalg.svd(M, full_matrices=False)
            keep = s > 1e-8 * s[0]
            _ = (u[:, keep].T @ sw @ u[:, keep]).diagonal() / s[keep] ** 2
    print(f"mnist_epoch_plus_eval_s {time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
