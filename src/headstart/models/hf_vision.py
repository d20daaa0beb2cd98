"""Image models from transformers (ViT, DeiT, DINOv2, ConvNeXt, Swin) by their own config, with timm's contract:

    spec = hub_spec("hf", "facebook/dinov2-small", "hf:facebook/dinov2-small")    # family "hf_vision", image
    model = build(spec, spec.path, num_classes=3, pretrained=True)
    model.forward_features(x) -> (B, width)          # the [CLS] token (ViT, DINOv2) or the model's pooled output

Pooling and block groups come from the config's model_type (POOL, BLOCKS); preprocessing (mean, std, size) from
the model's image-processor config. Family interface (models/factory.py): build, from_folder, save_extras,
export_state / import_state (transformers' names on disk, so AutoModel loads an export), onnx_example.
"""
from __future__ import annotations

from pathlib import Path

import torch

from headstart.models.encoder import EncoderClassifier, auto_encoder, hub_build
from headstart.models.encoder import export_state, import_state, save_extras  # noqa: F401  (the family interface)
from headstart.models.hub import hub_unreachable, offline_mode
from headstart.models.registry import BackboneSpec

POOL = {"vit": "cls", "deit": "cls", "dinov2": "cls", "convnext": "pooled", "convnextv2": "pooled", "swin": "pooled"}
BLOCKS = r"^encoder\.(?:encoder\.)?(?:layers?|stages)\.(\d+)"    # transformer layers or CNN stages, any version
INTERPOLATES = ("vit", "deit")    # position embeddings resized to the run's input size on the fly


def width(config) -> int:
    sizes = getattr(config, "hidden_sizes", None)
    return int(sizes[-1]) if sizes else int(config.hidden_size if config.model_type != "swin"
                                             else config.embed_dim * 2 ** (len(config.depths) - 1))


class VisionClassifier(EncoderClassifier):
    def __init__(self, encoder, num_classes: int):
        super().__init__(encoder, width(encoder.config), num_classes)
        self.kind = encoder.config.model_type

    @classmethod
    def from_folder(cls, folder: str | Path, num_classes: int, pretrained: bool = True) -> "VisionClassifier":
        return cls(auto_encoder(folder, pretrained, pooler=POOL.get(_model_type(folder)) != "cls"), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        kw = {"interpolate_pos_encoding": True} if self.kind in INTERPOLATES else {}
        out = self.encoder(pixel_values=x, **kw)
        return out.last_hidden_state[:, 0] if POOL[self.kind] == "cls" else out.pooler_output.flatten(1)

    def group_matcher(self, coarse: bool = True) -> dict:
        return {"stem": r"^encoder\.embeddings", "blocks": [(BLOCKS, None)]}


def _model_type(folder) -> str:
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(str(folder)).model_type


def _edge(size, *keys: str) -> int | None:
    """A processor's size (a dict, or transformers' SizeDict) as one edge: height, else shortest_edge."""
    for k in keys or ("height", "shortest_edge"):
        v = size.get(k) if isinstance(size, dict) else getattr(size, k, None)
        if v:
            return int(v)
    return None


def preprocessing(model_id: str, config) -> tuple[int, float, tuple, tuple]:
    """(input size, crop share, mean, std) from the model's image-processor config (ImageNet's when it has none)."""
    from transformers import AutoImageProcessor
    try:
        p = AutoImageProcessor.from_pretrained(model_id)
    except (OSError, ValueError):
        p = None
    size = _edge(getattr(p, "crop_size", None)) or _edge(getattr(p, "size", None)) or getattr(config, "image_size", 224)
    short = _edge(getattr(p, "size", None), "shortest_edge") if getattr(p, "do_center_crop", False) else None
    mean = tuple(getattr(p, "image_mean", None) or (0.485, 0.456, 0.406))
    std = tuple(getattr(p, "image_std", None) or (0.229, 0.224, 0.225))
    return int(size), (size / short if short else 1.0), mean, std


def hub_spec(model_id: str, name: str) -> BackboneSpec:
    from transformers import AutoConfig
    with offline_mode(hub_unreachable()):
        config = AutoConfig.from_pretrained(model_id)
        size, crop, mean, std = preprocessing(model_id, config)
    return BackboneSpec(name, config.model_type, size, crop, mean, std, "hf-hub", 0, "image", model_id,
                        family="hf_vision")


def build(spec, weights, num_classes: int, pretrained: bool):
    return hub_build(lambda: VisionClassifier.from_folder(spec.path, num_classes, pretrained=pretrained), spec,
                     "image model", "efficientnet_lite0")


def from_folder(folder: Path, spec, num_classes: int):
    return VisionClassifier.from_folder(folder, num_classes, pretrained=False)


def onnx_example(spec, size: int):
    return torch.zeros(1, 3, size, size)
