"""timm image backbones: packaged weights mapped by tensor order, timm hub weights, and exported folders.

Family interface (models/factory.py): build(spec, weights, num_classes, pretrained), source_model(spec, weights),
from_folder(folder, spec, num_classes), save_extras(model, spec, folder, input_size=, classes=),
onnx_example(spec, size); optional export_state(state) / import_state(state): the weights' names on disk.
Architecture quirks (trunk cache split, BatchNorm folding pairs) are data in models/archs.py.
"""
from __future__ import annotations

from pathlib import Path

from headstart.core.errors import UserError
from headstart.core.io import write_json
from headstart.models.hub import hub_unreachable, offline_mode
from headstart.models.registry import BACKBONES


def build(spec, weights, num_classes: int, pretrained: bool):
    import timm
    if not pretrained:
        return timm.create_model(spec.arch, pretrained=False, num_classes=num_classes)
    model = source_model(spec, weights)
    model.reset_classifier(num_classes)
    return model


def source_model(spec, weights):
    """The pretrained network with its original head (e.g. the 1000 ImageNet classes)."""
    import timm
    import torch
    if spec.source == "timm-hub":
        offline = hub_unreachable()
        try:
            with offline_mode(offline):     # offline: weights already in the Hugging Face cache still load, at once
                return timm.create_model(spec.arch, pretrained=True)
        except Exception as e:
            raise UserError(f"could not download {spec.name} from the timm hub ("
                            f"{'no connection to huggingface.co' if offline else type(e).__name__}); offline, use one "
                            f"of {', '.join(BACKBONES)}") from None
    model = timm.create_model(spec.arch, pretrained=False, num_classes=spec.source_classes)
    load_state(model, torch.load(weights, map_location="cpu", weights_only=True), remap=True)
    return model


def from_folder(folder: Path, spec, num_classes: int):
    import timm
    return timm.create_model(spec.arch, pretrained=False, num_classes=num_classes)


def save_extras(model, spec, folder: Path, input_size: int, classes: list[str]) -> dict:
    """config.json in timm's format: timm.create_model("local-dir:<folder>", pretrained=True) rebuilds this
    network with these weights, and timm.data.resolve_data_config + create_transform reproduce headstart's own
    preprocessing (resize the short side to size / crop_pct, bicubic, centre crop, the backbone's mean and std)."""
    short = spec.short_side(input_size)
    write_json(folder / "config.json", {
        "architecture": spec.arch, "num_classes": len(classes), "num_features": int(model.num_features),
        "label_names": list(classes),
        "pretrained_cfg": {"input_size": [3, input_size, input_size], "interpolation": "bicubic",
                           "mean": list(spec.mean), "std": list(spec.std), "crop_pct": input_size / short,
                           "crop_mode": "center", "num_classes": len(classes)}})
    return {}


def onnx_example(spec, size: int):
    import torch
    return torch.zeros(1, 3, size, size)


def load_state(model, state: dict, remap: bool) -> None:
    """Load a state dict; `remap` maps tensors by order (packaged files use other names, same order)."""
    target = model.state_dict()
    if remap:
        if len(state) != len(target):
            raise UserError(f"weights file has {len(state)} tensors, architecture expects {len(target)}")
        state = dict(zip(target.keys(), state.values()))
    bad = [k for k, v in state.items() if k in target and target[k].shape != v.shape]
    if bad:
        raise UserError(f"weights do not fit the architecture (first mismatch: {bad[0]})")
    model.load_state_dict(state, strict=True)

