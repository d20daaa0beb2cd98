"""Parameter groups of a timm-contract model, from the head down (the unit of freezing and of layer-wise LRs).

    groups = block_groups(model)    # [[head params], [top block group], ..., [stem]]
"""
from __future__ import annotations


def block_groups(model) -> list[list[str]]:
    """Parameter-name groups ordered from the head down: [head], [top block group], ..., [stem].

    Uses timm's own coarse group_matcher (the grouping timm uses for layer-wise LR decay)."""
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    ordered = [names for _, names in sorted(groups.items(), key=lambda kv: kv[0], reverse=True)]
    head = {n for n, _ in model.get_classifier().named_parameters(prefix=classifier_prefix(model))}
    ordered = [[n for n in g if n not in head] for g in ordered]
    return [sorted(head)] + [g for g in ordered if g]


def classifier_prefix(model) -> str:
    clf = model.get_classifier()
    for name, mod in model.named_modules():
        if mod is clf:
            return name
    raise ValueError("classifier module not found")
