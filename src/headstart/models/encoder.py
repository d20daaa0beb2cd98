"""What a non-timm encoder needs to behave like a timm model: the head half of timm's contract, written once.

    class MyClassifier(EncoderClassifier):          # define forward_features(batch) and group_matcher()
        ...

forward_features(batch) -> pooled (B, num_features); forward_head(x, pre_logits=True) returns x unchanged;
get_classifier / reset_classifier(num_classes) as in timm. So strategies, block groups, the training loop,
evaluation and export treat text and speech encoders like any timm backbone.
"""
from __future__ import annotations

import torch.nn as nn


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
