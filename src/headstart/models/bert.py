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

from headstart.core.errors import UserError
from headstart.models.encoder import EncoderClassifier
from headstart.models.hub import hub_unreachable, offline_mode


class TextClassifier(EncoderClassifier):
    """BERT-family encoder + mean pooling over real tokens + linear head, with timm's method names."""

    def __init__(self, encoder, num_classes: int):
        super().__init__(encoder, encoder.config.hidden_size, num_classes)

    @classmethod
    def from_folder(cls, folder: str | Path, num_classes: int, pretrained: bool = True) -> "TextClassifier":
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()        # the unused pooler's "unexpected keys" notice is expected
        hf_logging.disable_progress_bar()
        if not pretrained:
            torch.manual_seed(torch.initial_seed())

        def load(**kw):
            # float32 master weights whatever the checkpoint stores (transformers 5 would keep an fp16 file's dtype)
            return (AutoModel.from_pretrained(str(folder), dtype=torch.float32, **kw) if pretrained else
                    AutoModel.from_config(AutoConfig.from_pretrained(str(folder)), **kw))
        try:
            enc = load(add_pooling_layer=False)     # BERT, RoBERTa, MPNet: the unused pooler left out
        except TypeError:                           # DistilBERT, ELECTRA, DeBERTa have none
            enc = load()
        return cls(enc, num_classes)

    def forward_features(self, batch: dict) -> torch.Tensor:
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1)

    def group_matcher(self, coarse: bool = True) -> dict:
        return {"stem": r"^encoder\.embeddings", "blocks": [(r"^encoder\.(?:encoder|transformer)\.layer\.(\d+)", None)]}


def build(spec, weights, num_classes: int, pretrained: bool):
    try:
        with offline_mode(spec.source == "hf-hub" and hub_unreachable()):
            return TextClassifier.from_folder(spec.path, num_classes, pretrained=pretrained)
    except OSError as e:
        raise UserError(f"could not load text encoder {spec.name} ({str(e)[:120]}); offline, use minilm_l6") \
            from None


def from_folder(folder: Path, spec, num_classes: int):
    """The architecture saved in an exported folder (its config.json), random weights."""
    return TextClassifier.from_folder(folder, num_classes, pretrained=False)


def export_state(state: dict) -> dict:
    """Encoder tensors under transformers' own names (AutoModel.from_pretrained on the folder loads them, instead
    of silently starting from random weights); the classification head stays `classifier.*` (AutoModel skips it)."""
    return {k[len("encoder."):] if k.startswith("encoder.") else k: v for k, v in state.items()}


def import_state(state: dict) -> dict:
    """Back to the classifier's names (folders exported before export_state keep theirs)."""
    if any(k.startswith("encoder.embeddings.") for k in state):
        return state
    return {k if k.startswith("classifier.") else "encoder." + k: v for k, v in state.items()}


def save_extras(model, spec, folder: Path, **_) -> dict:
    """The encoder's config and tokenizer travel with the weights (no hub needed to reload)."""
    from transformers import AutoTokenizer
    model.encoder.config.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(spec.path).save_pretrained(str(folder))
    return {"path": ""}


def onnx_example(spec, size: int):
    return None
