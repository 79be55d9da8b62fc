"""Runs the published codebases' own metric code on the conventions fixture and records
their numbers under nclab's key names (crates/nclab/tests/fixtures/conventions/recorded.json,
checked by crates/nclab/tests/conventions_recorded.rs).

    python bench/conventions/record.py --fixture crates/nclab/tests/fixtures/conventions/fixture.npz \
        --rhubarbwu DIR --nctoolbox DIR --nc-loss DIR --tding1 DIR --notebook DIR --out recorded.json

Each DIR is a checkout (or `git archive` export) of the codebase at the commit named in
COMMITS; bench/conventions/README.md has the exact commands. Nothing of theirs is copied
here: their modules are imported from DIR (the notebook's analysis cell is read from DIR and
exec'd), and this script only feeds them the fixture the way their own drivers feed a
network's features (a DataLoader over the features, a model whose `fc` holds W and b, the
hooks their scripts register) and calls the functions their drivers call, in that order.
Where a driver's only line of metric code sits in an unimportable `main()` (nc1 in
evaluate.py l.332 and validate_NC.py l.209) that one expression is written out here.

Adaptations, each also in README.md:
- torchvision is not installed: empty stand-in modules satisfy the top-level imports of
  evaluate.py (Data/*.py) and validate_NC.py (datasets.py); no torchvision code is used.
- tding1 calls `.cuda()`; on this CPU machine `torch.Tensor.cuda` returns the tensor itself
  while its functions run.
- nc_loss stores `features[b].detach().cpu().numpy()` and then adds into `features[b]` in
  place (evaluate.py l.85-90, and `/=` at l.103). On its GPU `.cpu()` copies; on a CPU it is
  the same memory, and the first stored sample of each class would end up as the class mean.
  While its functions run, `torch.Tensor.cpu` returns a copy, as it does from a GPU.
- validate_NC.py divides by hard-coded dataset counts (l.14-17); its CIFAR10_TRAIN_SAMPLES
  constant is set to the fixture's class counts (with `dataset='cifar10'`).
- The notebook's globals (cell 2 and 5) are set as its section j. in docs/conventions says:
  debug = False, loss_name = 'CrossEntropyLoss', C = K, epoch = 0.
- torch runs with one thread. Nothing is seeded: the notebook's `svds(Sb, k=C-1)` passes no
  generator, and scipy 1.17 then draws ARPACK's start vector from a fresh, unseeded
  `np.random.default_rng()`, so its nc1 differs from run to run (float64: ~1e-10 relative;
  float32: by a factor, which is one reason that number is not compared).
"""

import argparse
import contextlib
import hashlib
import json
import platform
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import scipy
import torch

COMMITS = {
    "rhubarbwu": ("rhubarbwu/neural-collapse", "c05a0b80d6bc6e8e2e102f2180f1f33b2c9605fd"),
    "nctoolbox": ("felixsh/nc-toolbox", "a527f99f8da0420b4e94ebfbb2d3c2b032b25af3"),
    "zhou2022": ("jinxinzhou/nc_loss", "a294e2a57e852bb3a577ab3eb09a5858546d410e"),
    "zhu2021": ("tding1/Neural-Collapse", "04ef5860d4a8dd54aa159d2c800dce83f30490e6"),
    "papyan2020": ("neuralcollapse/neuralcollapse", "7f12011df9144dd0e0a6073339b10e70e2b53666"),
}

# The files whose code runs, hashed into the record so a rerun can tell it ran the same code.
SOURCES = {
    "rhubarbwu": ["neural_collapse/accumulate.py", "neural_collapse/measure.py",
                  "neural_collapse/kernels.py", "neural_collapse/util.py"],
    "nctoolbox": ["nc_toolbox/metrics.py", "nc_toolbox/statistic.py", "nc_toolbox/util.py"],
    "zhou2022": ["evaluate.py", "train_utils.py"],
    "zhu2021": ["validate_NC.py", "utils.py"],
    "papyan2020": ["neuralcollapse.ipynb"],
}

BATCH = 64  # loader batch size (several batches, as a real pass has)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_fixture(path):
    with np.load(path) as z:
        return z["features"], z["labels"], z["weight"], z["bias"]


def loader(features, labels):
    data = torch.utils.data.TensorDataset(torch.from_numpy(features), torch.from_numpy(labels))
    return torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=False)


def stub_torchvision():
    """Empty stand-ins for the torchvision modules their files import at the top."""
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass

    class Placeholder:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("torchvision stand-in: not available in this harness")

    def module(name):
        mod = types.ModuleType(name)
        mod.__getattr__ = lambda attr: Placeholder
        sys.modules[name] = mod
        return mod

    root = module("torchvision")
    for sub in ["datasets", "transforms", "models"]:
        setattr(root, sub, module("torchvision." + sub))


@contextlib.contextmanager
def on_path(path):
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))


@contextlib.contextmanager
def patched(owner, name, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def value(v, run, source):
    return {"value": float(v), "run": run, "from": source}


# --- rhubarbwu/neural-collapse ------------------------------------------------------------

def run_rhubarbwu(path, H, y, W, b):
    """examples/mnist.py's sequence, with the library's defaults (float32 accumulators,
    compute() = mean of the class means, raw W, no bias; no FAISS installed)."""
    with on_path(path):
        from neural_collapse.accumulate import (CovarAccumulator, DecAccumulator,
                                                MeanAccumulator, VarNormAccumulator)
        from neural_collapse.measure import (clf_ncc_agreement, covariance_ratio,
                                             self_duality_error, simplex_etf_error,
                                             variability_cdnv)
    K, d = W.shape
    weights = torch.from_numpy(W)
    batches = loader(H, y)

    mean_accum = MeanAccumulator(K, d, "cpu")
    for X, Y in batches:
        mean_accum.accumulate(X, Y)
    means, mG = mean_accum.compute()

    var_norms_accum = VarNormAccumulator(K, d, "cpu", M=means)
    covar_accum = CovarAccumulator(K, d, "cpu", M=means)
    for X, Y in batches:
        var_norms_accum.accumulate(X, Y, means)
        covar_accum.accumulate(X, Y, means)
    var_norms, _ = var_norms_accum.compute()
    covar_within = covar_accum.compute()

    dec_accum = DecAccumulator(K, d, "cpu", M=means, W=weights)
    dec_accum.create_index(means)
    assert dec_accum.index is None, "FAISS installed: its NCC path would be used"
    for X, Y in batches:
        dec_accum.accumulate(X, Y, weights, means)

    run = "float32"
    raw = {
        "nc1_pinv": covariance_ratio(covar_within, means, mG),
        "nc1_cdnv": variability_cdnv(var_norms, means),
        "nc2_etf_err": simplex_etf_error(means, mG),
        "nc2_etf_err_W": simplex_etf_error(weights),
        "nc3_dual_err": self_duality_error(weights, means, mG),
        "nc4_agree": clf_ncc_agreement(dec_accum),
    }
    values = {
        "nc1": value(raw["nc1_pinv"], run, "covariance_ratio(covar_within, means, mG)"),
        "cdnv": value(raw["nc1_cdnv"], run, "variability_cdnv(var_norms, means)"),
        "nc2_means": value(raw["nc2_etf_err"], run, "simplex_etf_error(means, mG)"),
        "nc2": value(raw["nc2_etf_err_W"], run, "simplex_etf_error(W) (raw W, m_G = 0)"),
        "nc3": value(raw["nc3_dual_err"], run, "self_duality_error(W, means, mG)"),
        "nc4": value(raw["nc4_agree"], run, "clf_ncc_agreement(dec_accum) (agreement, argmax W h)"),
    }
    return {"runs": {run: raw}, "values": values, "not_compared": []}


# --- felixsh/nc-toolbox -----------------------------------------------------------------------

def run_nctoolbox(path, H, y, W, b):
    """README/demo sequence. Compared: features, W and b cast to float64 first (their
    float32 nc1_strong inverts round-off, docs/conventions/nctoolbox.md i.); the float32 run
    is recorded beside it."""
    with on_path(path):
        import nc_toolbox as nct

    def one(H, W, b):
        mu_c = nct.class_embedding_means(H, y)
        mu_g = nct.global_embedding_mean(H)
        var_c = nct.class_embedding_variances(H, y, mu_c)
        return {
            "nc1_strong": nct.nc1_strong(H, y, mu_c, mu_g),
            "nc1_cdnv": nct.nc1_cdnv(mu_c, var_c),
            "nc2_equinormness": nct.nc2_equinormness(mu_c, mu_g),
            "nc2_equiangularity": nct.nc2_equiangularity(mu_c, mu_g),
            "nc3_self_duality": nct.nc3_self_duality(W, mu_c, mu_g),
            "nc4_classifier_agreement": nct.nc4_classifier_agreement(H, W, b, mu_c),
        }

    f64 = one(H.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
    f32 = one(H, W, b)
    run = "float64"
    values = {
        "nc1": value(f64["nc1_strong"], run, "nc1_strong(H, L, mu_c, mu_g)"),
        "cdnv": value(f64["nc1_cdnv"], run, "nc1_cdnv(mu_c, var_c)"),
        "equinorm_h": value(f64["nc2_equinormness"], run, "nc2_equinormness(mu_c, mu_g)"),
        "equiangle_h": value(f64["nc2_equiangularity"], run, "nc2_equiangularity(mu_c, mu_g)"),
        "nc3": value(f64["nc3_self_duality"], run, "nc3_self_duality(W, mu_c, mu_g)"),
        "nc4": value(f64["nc4_classifier_agreement"], run, "nc4_classifier_agreement(H, W, b, mu_c)"),
    }
    not_compared = [{
        "key": "nc1", "run": "float32", "from": "nc1_strong(H, L, mu_c, mu_g)",
        "value": float(f32["nc1_strong"]),
        "reason": "float32 features: mu_g = H.mean() is float32 while mu_c is float64, so "
                  "Sigma_B has a spurious K-th singular value from that round-off; whether it "
                  "clears numpy's rcond = 1e-15 (and is then inverted) is decided by round-off, "
                  "not by the formula (docs/conventions/nctoolbox.md i.). The float64 run is "
                  "compared instead.",
    }]
    return {"runs": {"float64": f64, "float32": f32}, "values": values,
            "not_compared": not_compared}


# --- jinxinzhou/nc_loss -----------------------------------------------------------------------

def run_nc_loss(path, H, y, W, b):
    """evaluate.py main()'s sequence (l.320-336) on the train pass, device 'cpu'."""
    stub_torchvision()
    with on_path(path):
        import evaluate
    device = torch.device("cpu")
    Wt, bt = torch.from_numpy(W), torch.from_numpy(b)
    model = lambda x: (x @ Wt.T + bt, x)  # the network: (logits, features), evaluate.py l.82
    gpu_like_cpu = lambda self, *a, **k: torch.Tensor.clone(self)  # .cpu() copies, as from a GPU
    with patched(torch.Tensor, "cpu", gpu_like_cpu):
        mu_G, mu_c, before, after, acc1, acc5 = evaluate.compute_info(model, loader(H, y), device)
        Sigma_W = evaluate.compute_Sigma_W(before, mu_c, device)
        Sigma_B = evaluate.compute_Sigma_B(mu_c, mu_G)
        collapse_metric = np.trace(Sigma_W @ evaluate.scilin.pinv(Sigma_B)) / len(mu_c)  # l.332
        ETF_metric = evaluate.compute_ETF(Wt, device)
        WH_relation_metric, _ = evaluate.compute_W_H_relation(Wt, mu_c, mu_G, device)
        Wh_b_relation_metric = evaluate.compute_Wh_b_relation(Wt, mu_G, bt, device)
    run = "float32"
    raw = {
        "collapse_metric": float(collapse_metric),
        "ETF_metric": ETF_metric,
        "WH_relation_metric": WH_relation_metric,
        "Wh_b_relation_metric": Wh_b_relation_metric,
        "train_acc1": acc1,
    }
    values = {
        "nc1": value(raw["collapse_metric"], run,
                     "np.trace(Sigma_W @ scilin.pinv(Sigma_B)) / K (evaluate.py l.332)"),
        "nc2": value(raw["ETF_metric"], run, "compute_ETF(W, device)"),
        "nc3": value(raw["WH_relation_metric"], run, "compute_W_H_relation(W, mu_c, mu_G, device)"),
        "bias_relation": value(raw["Wh_b_relation_metric"], run,
                               "compute_Wh_b_relation(W, mu_G, b, device) (plotted as NC4)"),
        "accuracy": value(raw["train_acc1"] / 100.0, run, "compute_info(...) top1 / 100"),
    }
    return {"runs": {run: raw}, "values": values, "not_compared": []}


# --- tding1/Neural-Collapse -------------------------------------------------------------------

def run_tding1(path, H, y, W, b):
    """validate_NC.py main()'s sequence (l.183-215) on the train pass, with `.cuda()` a no-op."""
    stub_torchvision()
    with on_path(path):
        import validate_NC as v
    K, d = W.shape
    counts = tuple(int(c) for c in np.bincount(y, minlength=K))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(d, K)
            with torch.no_grad():
                self.fc.weight.copy_(torch.from_numpy(W))
                self.fc.bias.copy_(torch.from_numpy(b))

        def forward(self, x):
            return self.fc(x), x

    model = Net()
    model.eval()
    fc_features = v.FCFeatures()
    model.fc.register_forward_pre_hook(fc_features)
    args = SimpleNamespace(device=torch.device("cpu"), dataset="cifar10")
    Wp, bp = model.fc.weight, model.fc.bias  # named_parameters' fc.weight / fc.bias (l.197-200)
    batches = loader(H, y)
    with patched(v, "CIFAR10_TRAIN_SAMPLES", counts), \
            patched(torch.Tensor, "cuda", lambda self, *a, **k: self):
        mu_G, mu_c, acc1, acc5 = v.compute_info(args, model, fc_features, batches, isTrain=True)
        Sigma_W = v.compute_Sigma_W(args, model, fc_features, mu_c, batches, isTrain=True)
        Sigma_B = v.compute_Sigma_B(mu_c, mu_G)
        collapse_metric = np.trace(Sigma_W @ v.scilin.pinv(Sigma_B)) / len(mu_c)  # l.209
        ETF_metric = v.compute_ETF(Wp)
        WH_relation_metric, _ = v.compute_W_H_relation(Wp, mu_c, mu_G)
        Wh_b_relation_metric = v.compute_Wh_b_relation(Wp, mu_G, bp)
    run = "float32"
    raw = {
        "collapse_metric": float(collapse_metric),
        "ETF_metric": ETF_metric,
        "WH_relation_metric": WH_relation_metric,
        "Wh_b_relation_metric": Wh_b_relation_metric,
        "train_acc1": acc1,
    }
    values = {
        "nc1": value(raw["collapse_metric"], run,
                     "np.trace(Sigma_W @ scilin.pinv(Sigma_B)) / K (validate_NC.py l.209)"),
        "nc2": value(raw["ETF_metric"], run, "compute_ETF(W) (raw W)"),
        "nc3": value(raw["WH_relation_metric"], run, "compute_W_H_relation(W, mu_c, mu_G) (raw W)"),
        "bias_relation": value(raw["Wh_b_relation_metric"], run,
                               "compute_Wh_b_relation(W, mu_G, b) (plotted as NC_4)"),
        "accuracy": value(raw["train_acc1"] / 100.0, run, "compute_info(...) top1 / 100"),
    }
    return {"runs": {run: raw}, "values": values, "not_compared": []}


# --- neuralcollapse/neuralcollapse (notebook) -------------------------------------------------

def run_notebook(path, H, y, W, b):
    """Cell 4's analysis() exec'd from the notebook, once as committed (float32) and once
    with the features and the classifier in float64 (for nc1, see not_compared)."""
    from scipy.sparse.linalg import svds
    from tqdm import tqdm

    nb = json.loads((Path(path) / "neuralcollapse.ipynb").read_text())
    source = "".join(nb["cells"][4]["source"])
    assert source.startswith("def analysis("), "cell 4 is not the analysis cell"
    K, d = W.shape

    def one(dtype):
        class features:  # cell 5: the hook stores fc's input here
            pass

        model = torch.nn.Sequential()
        model.fc = torch.nn.Linear(d, K)
        with torch.no_grad():
            model.fc.weight.copy_(torch.from_numpy(W))
            model.fc.bias.copy_(torch.from_numpy(b))
        model = model.to(dtype)  # a Sequential of fc alone: forward(x) = fc(x)

        def hook(self, input, output):  # cell 5 l.11-12
            features.value = input[0].clone()

        classifier = model.fc
        classifier.register_forward_hook(hook)
        graphs = SimpleNamespace(**{name: [] for name in [
            "accuracy", "loss", "reg_loss", "Sw_invSb", "norm_M_CoV", "norm_W_CoV", "cos_M",
            "cos_W", "W_M_dist", "NCC_mismatch", "MSE_wd_features", "LNC1", "LNC23", "Lperp"]})
        ns = {
            "torch": torch, "np": np, "nn": torch.nn, "F": torch.nn.functional, "tqdm": tqdm,
            "svds": svds, "C": K, "features": features, "classifier": classifier, "epoch": 0,
            "debug": False, "weight_decay": 5e-4, "loss_name": "CrossEntropyLoss",
        }
        exec(compile(source, "neuralcollapse.ipynb:cell4", "exec"), ns)
        Hd = H.astype(np.float32 if dtype == torch.float32 else np.float64)
        ns["analysis"](graphs, model, torch.nn.CrossEntropyLoss(reduction="sum"),
                       torch.device("cpu"), K, loader(Hd, y))
        return {name: float(vals[-1]) for name, vals in vars(graphs).items() if vals}

    f32 = one(torch.float32)
    f64 = one(torch.float64)
    values = {
        "nc1": value(f64["Sw_invSb"], "float64", "Sw_invSb: np.trace(Sw @ inv_Sb), svds(Sb, k=C-1)"),
        "equinorm_h": value(f32["norm_M_CoV"], "float32", "norm_M_CoV"),
        "equinorm_w": value(f32["norm_W_CoV"], "float32", "norm_W_CoV"),
        "equiangle_h": value(f32["cos_M"], "float32", "cos_M: coherence(M_/M_norms)"),
        "equiangle_w": value(f32["cos_W"], "float32", "cos_W: coherence(W.T/W_norms)"),
        "nc3": value(f32["W_M_dist"], "float32", "W_M_dist"),
        "nc4": value(f32["NCC_mismatch"], "float32", "NCC_mismatch"),
        "accuracy": value(f32["accuracy"], "float32", "accuracy"),
    }
    not_compared = [{
        "key": "nc1", "run": "float32", "from": "Sw_invSb", "value": f32["Sw_invSb"],
        "reason": "svds(k=C-1) keeps the fourth between-class eigenvalue, 9.0e-8 of the largest "
                  "(centred by the mean of the class means), which a float32 Sb cannot resolve "
                  "(its round-off is ~1e-8..1e-7 of the largest), and nc1 is dominated by 1/that "
                  "eigenvalue: with svds's unseeded start vector, reruns of the same command gave "
                  "1.6e6 to 5.6e6. The float64 run of the same cell is compared instead.",
    }]
    return {"runs": {"float32": f32, "float64": f64}, "values": values,
            "not_compared": not_compared}


RUNNERS = {
    "zhou2022": ("nc_loss", run_nc_loss),
    "zhu2021": ("tding1", run_tding1),
    "papyan2020": ("notebook", run_notebook),
    "rhubarbwu": ("rhubarbwu", run_rhubarbwu),
    "nctoolbox": ("nctoolbox", run_nctoolbox),
}


def versions():
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__, "scipy": scipy.__version__,
           "torch_threads": torch.get_num_threads()}
    for name in ["dask", "sklearn", "tqdm"]:
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    try:
        import faiss  # noqa: F401
        out["faiss"] = faiss.__version__
    except ImportError:
        out["faiss"] = None
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixture", required=True)
    parser.add_argument("--out")
    for arg in ["rhubarbwu", "nctoolbox", "nc-loss", "tding1", "notebook"]:
        parser.add_argument("--" + arg, help="checkout of the codebase (skipped when absent)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    H, y, W, b = load_fixture(args.fixture)
    checksum = hashlib.sha256(H.tobytes() + y.tobytes() + W.tobytes() + b.tobytes()).hexdigest()
    record = {
        "fixture": Path(args.fixture).name,
        "fixture_sha256": sha256(args.fixture),
        "command": "python " + " ".join(sys.argv),
        "environment": versions(),
        "presets": {},
    }
    for preset, (arg, runner) in RUNNERS.items():
        path = getattr(args, arg.replace("-", "_"))
        if path is None:
            continue
        repo, commit = COMMITS[preset]
        result = runner(Path(path), H, y, W, b)
        # Their code must not have written into the fixture's arrays.
        assert hashlib.sha256(H.tobytes() + y.tobytes() + W.tobytes() + b.tobytes()).hexdigest() == checksum
        record["presets"][preset] = {
            "codebase": repo,
            "commit": commit,
            "sources_sha256": {f: sha256(Path(path) / f) for f in SOURCES[preset]},
            **result,
        }
    text = json.dumps(record, indent=2, sort_keys=False) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
