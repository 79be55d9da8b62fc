"""Neural collapse of a PyTorch model's layers over a data loader, in one call.

    import nclab.torch
    results = nclab.torch.collapse(model, train_loader)   # {"fc:input": {"nc1": ..., ...}}

This module is plain Python and imports torch only when :func:`collapse` runs, so
``import nclab`` never pulls torch in.

What :func:`collapse` does (docs/python.md, "PyTorch"):

1. Puts every module in eval mode and runs under ``torch.no_grad()``.
2. Registers forward hooks on the watched layers. A layer is named as in
   ``model.named_modules()``: ``"layer3"`` watches that module's output, ``"fc:input"`` the
   (first) input of module ``fc``. The default is the input of the last ``nn.Linear`` that
   runs in a forward pass (found by one forward pass on the first batch): the penultimate
   features, measured against that layer's weight and bias as the classifier.
3. 4-D outputs (N x C x H x W, convolutional) are global-average-pooled to N x C; other
   shapes are flattened to N x (everything else).
4. Pass 1 over the loader gives each layer's class means (phase 1 of the engine), pass 2 the
   scatter around them (phase 2). Both passes must see the same samples: if their per-class
   counts or per-class feature means differ (random augmentation, a loader whose samples
   change between epochs), it raises ``ValueError`` saying so.
5. Removes its hooks and restores every module's own ``training`` flag, also when an
   exception is raised.

Watching several layers gives per-layer (progressive) neural collapse in one call; layers
without a classifier have the classifier metrics None.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from . import MeanAccumulator

__all__ = ["collapse"]

#: Relative tolerance on the per-class feature means of the two passes: features of the same
#: samples may differ by float32 rounding when batches are composed differently, a random
#: augmentation moves them by far more.
SAME_DATA_RTOL = 1e-4


def _split_batch(batch):
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, dict) and "label" in batch:
        return batch.get("input", batch.get("image")), batch["label"]
    raise TypeError(
        "each batch of the loader must be (inputs, labels) (a tuple or list), "
        f"got {type(batch).__name__}"
    )


def _to_features(torch, t) -> np.ndarray:
    """A captured activation as an N x d numpy array (4-D: global average pooling)."""
    if isinstance(t, (tuple, list)):
        t = t[0]
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"a watched layer gave {type(t).__name__}, expected a tensor")
    t = t.detach()
    if t.ndim == 4:
        t = t.mean(dim=(2, 3))
    elif t.ndim == 1:
        t = t.unsqueeze(1)
    elif t.ndim != 2:
        t = t.flatten(1)
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.to("cpu").contiguous().numpy()


def _labels(torch, y) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().to("cpu").numpy()
    return np.asarray(y)


def _device(model, torch):
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _last_linear(model, torch, inputs) -> str:
    """The name of the last nn.Linear that runs in a forward pass on ``inputs``."""
    order: List[str] = []
    handles = [
        module.register_forward_pre_hook(lambda _m, _i, name=name: order.append(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ValueError(
            "the model runs no nn.Linear, so there is no default layer: name the layers "
            "to watch, e.g. layers=['avgpool']"
        )
    return order[-1]


class _Watch:
    """The hooks of one pass: the activations of each watched layer in the current forward."""

    def __init__(self, model, torch, specs: Sequence[str]):
        modules = dict(model.named_modules())
        self.captured: Dict[str, Any] = {}
        self.handles = []
        self.torch = torch
        try:
            for spec in specs:
                name, _, what = spec.partition(":")
                if what not in ("", "input"):
                    raise ValueError(f"layer '{spec}': expected 'name' or 'name:input'")
                if name not in modules:
                    known = ", ".join(n for n in modules if n) or "none"
                    raise ValueError(f"layer '{name}' is not a module of the model (it has: {known})")
                module = modules[name]
                if what == "input":
                    hook = module.register_forward_pre_hook(
                        lambda _m, args, spec=spec: self._keep(spec, args[0] if args else None)
                    )
                else:
                    hook = module.register_forward_hook(
                        lambda _m, _args, out, spec=spec: self._keep(spec, out)
                    )
                self.handles.append(hook)
        except BaseException:
            self.remove()
            raise

    def _keep(self, spec, value):
        if spec in self.captured:
            raise ValueError(
                f"layer '{spec}' ran twice in one forward pass: watch a module that runs once"
            )
        self.captured[spec] = _to_features(self.torch, value)

    def forward(self, model, inputs) -> Dict[str, np.ndarray]:
        self.captured = {}
        model(inputs)
        return self.captured

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def collapse(
    model,
    loader: Iterable,
    layers: Optional[Sequence[str]] = None,
    *,
    num_classes: Optional[int] = None,
    device=None,
) -> Dict[str, Dict[str, Any]]:
    """Every NC metric (docs/metrics.md) of the watched layers of ``model`` over ``loader``.

    Args:
        model: a ``torch.nn.Module``.
        loader: re-iterable batches ``(inputs, labels)``, e.g. a ``DataLoader`` (it is read
            twice, and must give the same samples both times: no random augmentation).
        layers: module names (``model.named_modules()``) whose output to watch, or
            ``"name:input"`` for a module's input; default the input of the last
            ``nn.Linear`` run in a forward pass (the penultimate features).
        num_classes: K; default ``out_features`` of that last ``nn.Linear``.
        device: where to run the model; default the device of its first parameter.

    Returns:
        ``{layer: metrics dict}``, each with the keys of :func:`nclab.metrics`. The layer
        ``"X:input"`` of an ``nn.Linear`` X is measured with X's weight and bias as the
        classifier; other layers have the classifier metrics None.
    """
    import torch  # only here: importing nclab never imports torch

    if iter(loader) is loader:
        raise TypeError(
            "loader must be re-iterable (a DataLoader, a list of batches): it is read twice"
        )
    device = _device(model, torch) if device is None else torch.device(device)
    flags = [(module, module.training) for module in model.modules()]
    watch = None
    try:
        model.eval()
        with torch.no_grad():
            last = None
            if layers is None or num_classes is None:
                first = next(iter(loader), None)
                if first is None:
                    raise ValueError("the loader gives no batches")
                last = _last_linear(model, torch, _split_batch(first)[0].to(device))
            specs = list(layers) if layers is not None else [f"{last}:input"]
            if not specs:
                raise ValueError("layers is empty: name at least one layer to watch")
            if num_classes is None:
                num_classes = dict(model.named_modules())[last].out_features
            modules = dict(model.named_modules())
            watch = _Watch(model, torch, specs)

            # Pass 1: class means of every layer.
            phase1: Dict[str, MeanAccumulator] = {}
            for batch in loader:
                inputs, labels = _split_batch(batch)
                captured = watch.forward(model, inputs.to(device))
                y = _labels(torch, labels)
                for spec in specs:
                    if spec not in captured:
                        raise ValueError(f"layer '{spec}' did not run in the forward pass")
                    h = captured[spec]
                    if spec not in phase1:
                        phase1[spec] = MeanAccumulator(num_classes, h.shape[1])
                    phase1[spec].add(h, y)
            if not phase1:
                raise ValueError("the loader gives no batches")

            # Pass 2: the scatter around those means, and the means again to check that
            # both passes saw the same data.
            phase2 = {}
            check = {}
            for spec in specs:
                name, _, what = spec.partition(":")
                module = modules[name]
                weight = bias = None
                if what == "input" and isinstance(module, torch.nn.Linear):
                    weight = module.weight.detach().to("cpu", torch.float64).numpy()
                    if module.bias is not None:
                        bias = module.bias.detach().to("cpu", torch.float64).numpy()
                phase2[spec] = phase1[spec].scatter(weight, bias)
                check[spec] = MeanAccumulator(num_classes, phase1[spec].dim)
            for batch in loader:
                inputs, labels = _split_batch(batch)
                captured = watch.forward(model, inputs.to(device))
                y = _labels(torch, labels)
                for spec in specs:
                    h = captured[spec]
                    check[spec].add(h, y)
                    phase2[spec].add(h, y)
            for spec in specs:
                _same_data(spec, phase1[spec], check[spec])
            return {spec: phase2[spec].result() for spec in specs}
    finally:
        if watch is not None:
            watch.remove()
        for module, training in flags:
            module.training = training


def _same_data(spec: str, first: MeanAccumulator, second: MeanAccumulator) -> None:
    """Raises unless both passes saw the same per-class counts and feature means."""
    why = (
        "the two passes over the loader saw different data ({}): both must give the same "
        "samples, so use a loader without random augmentation (e.g. the test-time "
        "transform) whose samples do not change between epochs"
    )
    c1, c2 = first.counts(), second.counts()
    if not np.array_equal(c1, c2):
        raise ValueError(why.format(f"per-class counts {c1.tolist()} then {c2.tolist()}"))
    m1, m2 = first.means(), second.means()
    scale = float(np.abs(m1).max()) or 1.0
    diff = float(np.abs(m1 - m2).max())
    if diff > SAME_DATA_RTOL * scale:
        raise ValueError(
            why.format(
                f"the per-class feature sums of layer '{spec}' differ by {diff / scale:.2e} "
                "of the largest mean"
            )
        )
