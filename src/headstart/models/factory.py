"""Backbone name -> model, through the builder of the spec's family; and the one path for exported folders.

    model, spec = create_backbone("efficientnet_lite0", num_classes=2)            # packaged offline weights
    model, spec = create_backbone("timm:resnet18", num_classes=2)                # timm hub weights (online)
    model, spec = create_backbone("runs/x/model", num_classes=5)                 # an earlier headstart model
    model, spec = create_backbone("efficientnet_lite0", 2, pretrained=False)     # scratch: same architecture
    model, spec, classes, meta = load_folder("runs/x/model")                     # predict / reuse an export

Every model follows timm's contract (forward_features / forward_head(pre_logits=True) / reset_classifier /
group_matcher), so strategies and the training loop never special-case a backbone. Family modules are imported on
first use (registry.FAMILIES maps a family to its module, as transformers' lazy auto-mapping does), so importing the
registry or the factory loads no model library.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from headstart.core.errors import UserError, first_line
from headstart.models.registry import BACKBONES, FAMILIES, BackboneSpec, hub_spec, parse_backbone_name
from headstart.models.weights import read_meta, read_weights, save_weights, write_meta


def family(spec: BackboneSpec):
    if spec.family not in FAMILIES:
        raise UserError(f"backbone family {spec.family!r} unknown; this headstart builds {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[spec.family])


def resolve(name: str) -> tuple[BackboneSpec, object]:
    """(spec, where its weights are): a file or folder path, a hub id, or None (timm hub)."""
    kind, value = parse_backbone_name(name)
    if kind == "registry":
        return BACKBONES[value]()
    if kind in ("timm", "hf"):
        return hub_spec(kind, value, name), (value if kind == "hf" else None)
    path = Path(value)
    meta = read_meta(path)
    spec = BackboneSpec(**{**meta["spec"], "name": name, "source": f"checkpoint:{path}", "path": str(path)})
    spec.source_classes = len(meta["classes"])
    return spec, path


def resolve_spec(name: str) -> BackboneSpec:
    """The spec alone (no weights loaded): preprocessing and architecture for `name`."""
    return resolve(name)[0]


def create_backbone(name: str, num_classes: int, pretrained: bool = True):
    """Return (model with a fresh `num_classes` head, BackboneSpec); pretrained=False: same architecture, random."""
    spec, weights = resolve(name)
    fam = family(spec)
    if spec.source.startswith("checkpoint:"):
        if pretrained:
            model = load_folder(weights)[0].train()
            model.reset_classifier(num_classes)
        else:
            model = fam.from_folder(Path(weights), spec, num_classes)
    else:
        model = fam.build(spec, weights, num_classes, pretrained)
    return model, spec if pretrained else dataclasses.replace(spec, source="random")


def load_source_model(name: str):
    """The pretrained model with its original head (e.g. the 1000 ImageNet classes), for zero-shot checks;
    (None, spec) for families without a pretrained classifier."""
    spec, weights = resolve(name)
    fam = family(spec)
    if spec.source.startswith("checkpoint:"):
        return load_folder(weights)[0], spec
    return (fam.source_model(spec, weights) if hasattr(fam, "source_model") else None), spec


def load_folder(folder: str | Path):
    """(model in eval mode, spec, classes, meta) of an exported model folder: its family rebuilds the saved
    architecture, then the weights load strictly."""
    folder = Path(folder)
    meta = read_meta(folder)
    spec = BackboneSpec(**meta["spec"])
    if spec.family != "timm":
        spec.path = str(folder)          # its config (and tokenizer) lie in the folder
    fam = family(spec)
    fix = "re-export the model with headstart run (or restore its headstart_model.json)"
    try:
        model = fam.from_folder(folder, spec, len(meta["classes"]))
    except (RuntimeError, ValueError, KeyError, OSError) as e:      # an architecture name no library knows
        raise UserError(f"{folder}: the architecture {spec.arch!r} in headstart_model.json cannot be built "
                        f"({first_line(e, 120)}); {fix}") from None
    state = read_weights(folder / "model.safetensors")
    try:
        model.load_state_dict(fam.import_state(state) if hasattr(fam, "import_state") else state, strict=True)
    except (RuntimeError, KeyError) as e:      # classes edited, or another model's weights
        raise UserError(f"{folder}: model.safetensors does not fit headstart_model.json ({len(meta['classes'])} "
                        f"classes, {spec.arch}: {first_line(e, 120)}); the class list or architecture was edited, or "
                        f"the weights belong to another model: {fix}") from None
    return model.eval(), spec, meta["classes"], meta


def save_folder(folder: str | Path, model, spec: BackboneSpec, classes: list[str], input_size: int,
                extra: dict | None = None) -> None:
    """Weights, what the family needs to rebuild the architecture offline, and headstart_model.json (written
    last: a folder without it is not a model folder)."""
    folder, fam = Path(folder), family(spec)
    # each family writes the weights under the names its own library loads them by (timm, transformers)
    state = model.state_dict()
    save_weights(folder / "model.safetensors", fam.export_state(state) if hasattr(fam, "export_state") else state)
    extras = fam.save_extras(model, spec, folder, input_size=input_size, classes=classes)
    write_meta(folder, {**spec.to_dict(), "input_size": input_size, **extras}, classes,
               {"trained_input_size": input_size, **(extra or {})})
