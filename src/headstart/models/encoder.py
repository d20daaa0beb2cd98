"""What a non-timm encoder needs to behave like a timm model: the head half of timm's contract, written once.

    class MyClassifier(EncoderClassifier):          # define forward_features(batch) and group_matcher()
        ...

forward_features(batch) -> pooled (B, num_features); forward_head(x, pre_logits=True) returns x unchanged;
get_classifier / reset_classifier(num_classes) as in timm. So strategies, block groups, the training loop,
evaluation and export treat text and speech encoders like any timm backbone.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from headstart.core.errors import UserError
from headstart.models.hub import hub_unreachable, offline_mode


class EncoderClassifier(nn.Module):
    def __init__(self, encoder, num_features: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.num_features = num_features
        self.classifier = nn.Linear(num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, batch):
        raise NotImplementedError

    def forward_head(self, x, pre_logits: bool = False):
        return x if pre_logits else self.classifier(x)

    def forward(self, batch):
        return self.forward_head(self.forward_features(batch))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def auto_encoder(folder: str | Path, pretrained: bool, pooler: bool = True):
    """transformers' AutoModel from a folder or hub id: its weights in float32 (whatever the checkpoint stores), or
    its architecture with the seeded random init; pooler=False leaves out a pooler the wrapper never uses, where the
    model has one to leave out."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()        # an unused pooler's "unexpected keys" notice is expected
    hf_logging.disable_progress_bar()
    if not pretrained:
        torch.manual_seed(torch.initial_seed())

    def load(**kw):
        return (AutoModel.from_pretrained(str(folder), dtype=torch.float32, **kw) if pretrained else
                AutoModel.from_config(AutoConfig.from_pretrained(str(folder)), **kw))
    if pooler:
        return load()
    try:
        return load(add_pooling_layer=False)
    except TypeError:                       # DistilBERT, ELECTRA, DeBERTa, DINOv2 have none
        return load()


def hub_build(make, spec, what: str, offline_use: str):
    """make() under the hub's offline switch when the hub is unreachable; a missing model is one line, not a
    traceback."""
    try:
        with offline_mode(spec.source == "hf-hub" and hub_unreachable()):
            return make()
    except OSError as e:
        raise UserError(f"could not load {what} {spec.name} ({str(e)[:120]}); offline, use {offline_use}") from None


def export_state(state: dict) -> dict:
    """Encoder tensors under transformers' own names (AutoModel.from_pretrained on the exported folder loads them
    instead of silently starting from random weights); the head stays `classifier.*` (AutoModel skips it)."""
    return {k[len("encoder."):] if k.startswith("encoder.") else k: v for k, v in state.items()}


def import_state(state: dict) -> dict:
    """Back to the wrapper's names."""
    return {k if k.startswith("classifier.") else "encoder." + k: v for k, v in state.items()}


def save_extras(model, spec, folder: Path, **_) -> dict:
    """The encoder's config travels with the weights (no hub needed to reload the architecture)."""
    model.encoder.config.save_pretrained(str(folder))
    return {"path": ""}
