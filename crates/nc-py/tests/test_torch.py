"""nclab.torch on small real models: per-layer results equal nclab.metrics on features
extracted by hand; hooks and training flags are restored; two passes that see different data
are refused. Skipped where torch is not installed (the default torch wheel pulls GBs of GPU
libraries: docs/python.md names the command that runs these)."""

from __future__ import annotations

import numpy as np
import pytest

import nclab

torch = pytest.importorskip("torch")
import nclab.torch  # noqa: E402

nn = torch.nn



def _close(got, want, rel: float, abs_: float) -> bool:
    """One metric value against another: numbers to a tolerance, None (undefined) and
    strings (the convention) exactly."""
    if want is None or isinstance(want, str):
        return got == want
    return got == pytest.approx(want, rel=rel, abs=abs_)

def _loader(x, y, batch=16):
    dataset = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False)


def _data(n=120, k=4, shape=(10,), seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = torch.randn((n, *shape), generator=g) + y.view(-1, *([1] * len(shape))).float()
    return x, y


class MLP(nn.Module):
    def __init__(self, k=4):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.fc = nn.Linear(8, k)

    def forward(self, x):
        return self.fc(self.body(x))


class CNN(nn.Module):
    def __init__(self, k=3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3), nn.ReLU())
        self.head = nn.Linear(5, k)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_mlp_default_layer_equals_features_by_hand():
    torch.manual_seed(1)
    model = MLP()
    model.train()
    x, y = _data()
    got = nclab.torch.collapse(model, _loader(x, y))
    assert list(got) == ["fc:input"]
    assert model.training and model.body[1].training  # flags restored
    model.eval()
    with torch.no_grad():
        h = model.body(x).numpy()
    w, b = model.fc.weight.detach().double().numpy(), model.fc.bias.detach().double().numpy()
    expected = nclab.metrics(h, y.numpy(), w, b)
    for key, want in expected.items():
        assert _close(got["fc:input"][key], want, 1e-6, 1e-9), key


def test_cnn_several_layers_pool_convolutions():
    torch.manual_seed(2)
    model = CNN()
    x, y = _data(n=90, k=3, shape=(1, 8, 8))
    got = nclab.torch.collapse(model, _loader(x, y, batch=32), layers=["conv.1", "conv", "head:input"])
    model.eval()
    with torch.no_grad():
        first = model.conv[1](model.conv[0](x))
        last = model.conv(x)
    by_hand = {
        "conv.1": nclab.metrics(first.mean(dim=(2, 3)).numpy(), y.numpy()),
        "conv": nclab.metrics(last.mean(dim=(2, 3)).numpy(), y.numpy()),
        "head:input": nclab.metrics(
            last.mean(dim=(2, 3)).numpy(), y.numpy(),
            model.head.weight.detach().double().numpy(), model.head.bias.detach().double().numpy(),
        ),
    }  # fmt: skip
    for layer, expected in by_hand.items():
        for key, want in expected.items():
            assert _close(got[layer][key], want, 1e-6, 1e-9), (layer, key)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_hooks_removed_and_flags_restored_on_error():
    model = MLP()
    model.train()
    model.body[1].eval()  # a module's own flag differs from its parent's

    class Failing:
        def __iter__(self):
            x, y = _data()
            yield x[:16], y[:16]
            raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        nclab.torch.collapse(model, Failing(), num_classes=4, layers=["fc:input"])
    assert _no_hooks(model)
    assert model.training and not model.body[1].training and model.fc.training


def test_random_augmentation_is_refused():
    model = MLP()
    x, y = _data()

    class Augmented:
        def __iter__(self):
            for i in range(0, len(y), 30):
                yield x[i:i + 30] + 0.1 * torch.randn_like(x[i:i + 30]), y[i:i + 30]

    with pytest.raises(ValueError, match="the two passes over the loader saw different data"):
        nclab.torch.collapse(model, Augmented())
    assert _no_hooks(model)
    shuffled = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    nclab.torch.collapse(model, shuffled)  # same samples in another order: fine


def test_tensors_go_in_directly():
    x, y = _data()
    direct, by_numpy = nclab.metrics(x, y), nclab.metrics(x.numpy(), y.numpy())
    assert direct.keys() == by_numpy.keys()
    for key in direct:
        # No classifier given: nc2, nc3, ... are None on both sides.
        assert _close(direct[key], by_numpy[key], 1e-12, 1e-15), key
    assert nclab.metrics(x.double().requires_grad_(), y)["nc1"] == pytest.approx(nclab.metrics(x, y)["nc1"])

