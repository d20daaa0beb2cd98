"""The BERT-family text encoder behind timm's contract, and the family builder the factory calls for it.

    model = TextClassifier.from_folder(path, num_classes=6)   # mean pooling, as sentence-transformers defines
    model.forward_features(batch) / forward_head(x, pre_logits=True) / get_classifier() / group_matcher()

Family interface (models/factory.py): build(spec, weights, num_classes, pretrained), from_folder(folder, spec,
num_classes), save_extras(model, spec, folder, **kw), onnx_example(spec, size), export_state / import_state
(transformers' names on disk, so AutoModel.from_pretrained loads the exported encoder).
"""
from __future__ import annotations

from pathlib import Path

import torch

from headstart.models.encoder import EncoderClassifier, auto_encoder, hub_build
from headstart.models.encoder import export_state  # noqa: F401  (the family interface: transformers' names on disk)
from headstart.models.encoder import import_state as encoder_import_state
from headstart.models.encoder import save_extras as encoder_save_extras


class TextClassifier(EncoderClassifier):
    """BERT-family encoder + mean pooling over real tokens + linear head, with timm's method names."""

    def __init__(self, encoder, num_classes: int):
        super().__init__(encoder, encoder.config.hidden_size, num_classes)

    @classmethod
    def from_folder(cls, folder: str | Path, num_classes: int, pretrained: bool = True) -> "TextClassifier":
        return cls(auto_encoder(folder, pretrained, pooler=False), num_classes)     # mean pooling: no pooler

    def forward_features(self, batch: dict) -> torch.Tensor:
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1)

    def group_matcher(self, coarse: bool = True) -> dict:
        return {"stem": r"^encoder\.embeddings", "blocks": [(r"^encoder\.(?:encoder|transformer)\.layer\.(\d+)", None)]}


def build(spec, weights, num_classes: int, pretrained: bool):
    return hub_build(lambda: TextClassifier.from_folder(spec.path, num_classes, pretrained=pretrained), spec,
                     "text encoder", "minilm_l6")


def from_folder(folder: Path, spec, num_classes: int):
    """The architecture saved in an exported folder (its config.json), random weights."""
    return TextClassifier.from_folder(folder, num_classes, pretrained=False)


def import_state(state: dict) -> dict:
    """Back to the classifier's names (folders exported before export_state keep theirs)."""
    if any(k.startswith("encoder.embeddings.") for k in state):
        return state
    return encoder_import_state(state)


def save_extras(model, spec, folder: Path, **_) -> dict:
    """The encoder's config and tokenizer travel with the weights (no hub needed to reload)."""
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(spec.path).save_pretrained(str(folder))
    return encoder_save_extras(model, spec, folder)


def onnx_example(spec, size: int):
    return None
