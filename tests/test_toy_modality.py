"""What adding a modality costs, measured: a toy "vectors" modality (a .npz file of feature vectors and labels) with
its own model family, registered from this test module alone, runs the whole experiment end to end: assessment,
the four arms, summary, report, export and predict. Nothing under src/headstart/ changes: the modality is one class
(on modalities/base.ModalityBase), an entry in MODALITIES, a backbone in BACKBONES (+ FAMILY_OF_MODALITY), and a
family module (build / from_folder / save_extras / onnx_example). In the package those are modalities/<name>.py,
modalities/__init__.py, models/registry.py and models/<family>.py: the 3 (4) files docs/architecture.md claims."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from headstart.core.dataset import LabeledSet
from headstart.models.encoder import EncoderClassifier
from headstart.modalities.base import IndexedItems, Modality, ModalityBase, ModalityState, standardised_logreg, top_k
from headstart.models.registry import BackboneSpec

DIM = 12


class ToyNet(EncoderClassifier):
    """Two linear blocks and a head, in timm's contract (group_matcher: blocks from the head down)."""

    def __init__(self, num_classes: int):
        super().__init__(nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU()), 16, num_classes)

    def forward_features(self, x):
        return self.encoder(x)

    def group_matcher(self, coarse: bool = False):
        return {"stem": r"^encoder\.0", "blocks": [(r"^encoder\.2", None)]}


# the family interface (models/factory.py imports this module by the name FAMILIES gives)
def build(spec, weights, num_classes: int, pretrained: bool):
    torch.manual_seed(123 if pretrained else 7)             # "pretrained": a fixed random projection
    return ToyNet(num_classes)


def from_folder(folder, spec, num_classes: int):
    return ToyNet(num_classes)


def save_extras(model, spec, folder, **_) -> dict:
    return {}


def onnx_example(spec, size: int):
    return None


class VectorModality(ModalityBase):
    name, default_backbone = "vectors", "toy_net"
    file_exts = {".npz"}
    defaults = {"epochs": 3, "lr_body": 1e-3, "lr_decay": 0.5, "unfreeze_groups": 2, "scratch_lr": 3e-3,
                "unfreeze_every": -1}

    def load(self, cfg, spec, size):
        z = np.load(cfg.data)
        classes = sorted(set(z["y"].tolist()))
        ds = LabeledSet(Path(cfg.data).parent, classes)
        for i, (x, y) in enumerate(zip(z["x"].astype(np.float32), z["y"].tolist())):
            ds.paths.append(f"row {i}")
            ds.items.append(torch.from_numpy(x))
            ds.labels.append(classes.index(y))
            ds.sources.append("")
            ds.hashes.append(hashlib.sha1(x.tobytes()).hexdigest())
        return ds

    def prepare(self, ds, spec, size, cfg) -> ModalityState:
        return ModalityState(ds.items, {"dim": DIM})

    def dataset(self, data, indices, train: bool = False):
        return IndexedItems(data.state.inputs, data.ds.labels, indices)

    def embed(self, data, model, progress=None):
        with torch.inference_mode():
            return model.eval().forward_features(torch.stack(data.state.inputs)).numpy()

    def classic_inputs(self, data, indices=None):
        return [x.numpy() for x in (data.ds.items if indices is None else [data.ds.items[i] for i in indices])]

    def classic_pipeline(self, C: float, seed: int):
        """the raw vectors, standardised, logistic regression"""
        return standardised_logreg(C, seed)

    def finetune_advice(self, early_shift: bool) -> str:
        return "both blocks at a low learning rate"

    def input_description(self, size: int) -> str:
        return f"{DIM}-dimensional vectors"

    def predict(self, model_dir, model, spec, classes, inputs, top, batch_size, runtime, options=None) -> list[dict]:
        rows = []
        for name in inputs:
            z = np.load(name)
            with torch.inference_mode():
                probs = model(torch.from_numpy(z["x"].astype(np.float32))).softmax(1)
            rows += [{"path": f"{name}:{i}", **top_k(p, classes, top)} for i, p in enumerate(probs)]
        return rows

    def read_unlabelled(self, inputs, spec, size):
        raise NotImplementedError


def toy_spec():
    return BackboneSpec("toy_net", "toy", 1, 1.0, (0.0,) * 3, (1.0,) * 3, "random", 0, "vectors", "", "toy"), None


@pytest.fixture
def registered(monkeypatch):
    from headstart import modalities
    from headstart.models import registry
    monkeypatch.setitem(modalities.MODALITIES, "vectors", VectorModality)
    monkeypatch.setitem(registry.BACKBONES, "toy_net", toy_spec)
    monkeypatch.setitem(registry.FAMILIES, "toy", __name__)
    monkeypatch.setitem(registry.FAMILY_OF_MODALITY, "vectors", "toy")
    assert sys.modules[__name__] is not None


def _data(path: Path, n: int = 120, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y = np.array(["a", "b", "c"])[np.arange(n) % 3]
    x = rng.normal(size=(n, DIM)) + 2.5 * np.eye(DIM)[np.arange(n) % 3]
    np.savez(path, x=x, y=y)
    return path


def test_the_toy_modality_implements_the_protocol():
    assert isinstance(VectorModality(), Modality)


def test_a_toy_modality_registered_from_outside_runs_the_whole_experiment(registered, tmp_path):
    from headstart.app.run import run_experiment
    from headstart.core.config import RunConfig
    from headstart.outputs.predict import predict
    data = _data(tmp_path / "vectors.npz")
    res = run_experiment(RunConfig(data=str(data), out=str(tmp_path / "run"), batch_size=16, scratch_epochs=4),
                         log=lambda *a: None).to_dict()
    assert res["data"]["modality"] == "vectors" and set(res["strategies"]) == {"classic", "linear-probe", "finetune",
                                                                                "scratch"}
    assert all("failed" not in m for m in res["strategies"].values()), res["strategies"]
    assert res["strategies"]["classic"]["accuracy"] > 0.8 and res["strategies"]["linear-probe"]["accuracy"] > 0.5
    assert "finetune - scratch" in res["paired_differences"] and res["assessment"]["scores"]["knn_raw"] > 0.5
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Deploy" in report and "12-dimensional vectors" in json.dumps(res["input"])
    rows = predict(tmp_path / "run" / "model", [str(_data(tmp_path / "new.npz", n=6, seed=1))])
    assert len(rows) == 6 and all(r["label"] in ("a", "b", "c") for r in rows)
