"""Architecture quirks as data, one row per timm model class: what the trunk cache and BatchNorm folding need.

    meta = arch_meta(model)            # ArchMeta, or None (an unknown architecture: no trunk cache, no folding)
    for prefix, stage in stages(model): ...

stem + stages + neck is the model's forward_features; forward_head follows. `bn_pairs` names, per owning module
class, which convolution feeds which BatchNorm (the pairs models/bnfold.py folds). Adding an architecture family
to the trunk cache and folding is one row here.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ArchMeta:
    stem: tuple[str, ...]                   # modules before the first stage, in forward order
    stages: str | tuple[str, ...]           # a Sequential whose children are the stages, or the stage attributes
    neck: tuple[str, ...] = ()              # modules between the last stage and forward_head
    bn_pairs: dict = field(default_factory=dict)   # owner class name -> {conv attribute: BatchNorm attribute}


ARCHS = {
    "EfficientNet": ArchMeta(("conv_stem", "bn1"), "blocks", ("conv_head", "bn2"),
                             {"InvertedResidual": {"conv_pw": "bn1", "conv_dw": "bn2", "conv_pwl": "bn3"},
                              "DepthwiseSeparableConv": {"conv_dw": "bn1", "conv_pw": "bn2"},
                              "EfficientNet": {"conv_stem": "bn1", "conv_head": "bn2"}}),
    "ResNet": ArchMeta(("conv1", "bn1", "act1", "maxpool"), ("layer1", "layer2", "layer3", "layer4"), (),
                       {"BasicBlock": {"conv1": "bn1", "conv2": "bn2"},
                        "Bottleneck": {"conv1": "bn1", "conv2": "bn2", "conv3": "bn3"},
                        "ResNet": {"conv1": "bn1"}}),
}


def arch_meta(model) -> ArchMeta | None:
    return ARCHS.get(type(model).__name__)


def stages(model) -> list[tuple[str, object]]:
    """(parameter-name prefix, module) of every stage, input to output; [] for an architecture not in ARCHS."""
    meta = arch_meta(model)
    if meta is None:
        return []
    if isinstance(meta.stages, str):
        return [(f"{meta.stages}.{i}.", m) for i, m in enumerate(getattr(model, meta.stages))]
    return [(f"{a}.", getattr(model, a)) for a in meta.stages]


def bn_pairs(owner) -> dict:
    """{conv attribute: BatchNorm attribute} for a module of a known architecture ({} otherwise)."""
    name = type(owner).__name__
    return next((m.bn_pairs[name] for m in ARCHS.values() if name in m.bn_pairs), {})
