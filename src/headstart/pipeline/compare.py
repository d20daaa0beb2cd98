"""Which pretrained model to start from: the decisions of `headstart run --backbones a,b,c` (no training here).

    trained = pick_backbones(ranking, cost, k=2)         # top-k by the assessment + the cheapest, in assessment order
    tau = rank_agreement(["a", "b", "c"], {"a": .91, "b": .93, "c": .88})   # Kendall tau, with its meaning in words
    rec = recommend_backbone(rows, n_val)                # the backbone to deploy: accuracy weighed against cost

app/compare.py runs the experiment; these functions only decide, so tests can check them on hand-made numbers.
The deploy decision uses validation only (the test split is reported, never chosen on): every backbone whose
validation accuracy lies within the noise of the best (paired over the same validation items, or two standard errors
of two proportions for older runs: stats/evaluate.validation_ties, the rule summarize.choose uses for arms) and at
most PRACTICAL_MARGIN below it is tied with it, and the cheapest of the tied is deployed, cheapest meaning the fewest
inference FLOPs per item (then the lower measured latency, then fewer parameters). A cheaper backbone within the
noise but further below is named as the alternative.
"""
from __future__ import annotations

from headstart.stats.evaluate import validation_ties

PRACTICAL_MARGIN = 0.02     # a cheaper backbone may cost at most this much validation accuracy (point estimate)


def cost_key(c: dict) -> tuple:
    return (c.get("flops_per_item") or float("inf"), c.get("latency_ms") or float("inf"), c.get("params") or 0)


def pick_backbones(ranking: list[str], cost: dict[str, dict], k: int = 2) -> tuple[list[str], dict[str, str]]:
    """(backbones to train, in assessment order; why each was chosen). ranking: best first by the assessment."""
    if k < 1:
        raise ValueError("k must be at least 1")
    why = {b: f"assessment rank {i + 1}" for i, b in enumerate(ranking[:k])}
    priced = [b for b in ranking if b in cost]
    if priced:
        cheapest = min(priced, key=lambda b: cost_key(cost[b]))
        why[cheapest] = (why[cheapest] + " and the cheapest") if cheapest in why else "the cheapest to run"
    return [b for b in ranking if b in why], why


def kendall_tau(predicted: list[str], measured: dict[str, float]) -> tuple[float | None, int, int, int]:
    """(tau-b, concordant pairs, discordant pairs, tied pairs): predicted is an order (best first), measured a
    score per backbone (higher is better). Ties in the measured scores count for neither side (tau-b)."""
    items = [b for b in predicted if b in measured]
    conc = disc = ties = 0
    for i in range(len(items)):
        for j in range(i + 1, len(items)):      # predicted: items[i] above items[j]
            d = measured[items[i]] - measured[items[j]]
            if abs(d) < 1e-12:
                ties += 1
            elif d > 0:
                conc += 1
            else:
                disc += 1
    n0 = len(items) * (len(items) - 1) // 2
    denom = (n0 * (n0 - ties)) ** 0.5           # no ties in a predicted order; tau-b's correction for measured ones
    return ((conc - disc) / denom if denom else None), conc, disc, ties


def rank_agreement(predicted: list[str], measured: dict[str, float], noisy_pairs: int = 0) -> dict:
    """Kendall tau between the assessment's order and the measured accuracies, said in words."""
    tau, conc, disc, ties = kendall_tau(predicted, measured)
    pairs = conc + disc + ties
    if tau is None:
        words = ("one backbone trained: no order to compare" if pairs == 0 else
                 "every measured accuracy tied: the order cannot be checked")
    else:
        how = ("exactly the measured order" if tau == 1 else "exactly the reverse of the measured order"
               if tau == -1 else "the measured order more often than not" if tau > 0 else
               "the measured order no better than a coin" if tau == 0 else "mostly the reverse of the measured order")
        words = (f"tau = {tau:+.2f}: the assessment predicted {how} ({conc} of {pairs} pair(s) in the right order"
                 + (f", {disc} reversed" if disc else "") + (f", {ties} tied" if ties else "") + ")")
        if noisy_pairs:
            words += (f"; {noisy_pairs} of the {pairs} pair(s) differ by less than the test noise (their paired 95% "
                      "CI spans 0), so their order is not settled by this data")
        if pairs < 3:
            words += "; with so few backbones tau can only be -1, 0 or +1, so read it as a check, not a statistic"
    return {"tau": tau, "concordant": conc, "discordant": disc, "tied": ties, "pairs": pairs, "words": words}


def _latency_words(r: float | None) -> str:
    if r is None:
        return ""
    return f", {r:.1f}x lower latency" if r >= 1.05 else (f", though its latency measured {1 / r:.1f}x higher"
                                                          if r <= 0.95 else ", about the same latency")


def recommend_backbone(rows: dict[str, dict], n_val: int, margin: float = PRACTICAL_MARGIN) -> dict:
    """rows: backbone -> {"val_score" (the run's decision metric; "val_acc" in older runs), "cost": {...}} of its
    best transfer arm. The deployed backbone and why.

    A cheaper backbone replaces the most accurate one when its validation accuracy is within the noise of the best
    AND at most `margin` below it: validation noise on a small set is wide (10 points at ~100 items), and "not
    distinguishable" is no reason to give up a large point estimate. A cheaper one within the noise but further
    below is named as the alternative, with both numbers, so the reader can trade them."""
    ok = {b: {**r, "val_acc": r.get("val_score", r.get("val_acc"))} for b, r in rows.items()
          if r.get("val_score", r.get("val_acc")) is not None}      # the decision metric, where the runs have it
    if not ok:
        return {"recommended": None, "why": "no backbone finished a transfer arm", "tied": []}
    best = max(ok, key=lambda b: (ok[b]["val_acc"], [-x for x in cost_key(ok[b]["cost"])]))
    top = ok[best]["val_acc"]
    tied, noise_of, paired = validation_ties(ok, best, n_val)
    close = [b for b in tied if ok[b]["val_acc"] >= top - margin - 1e-9]
    pick = min(close, key=lambda b: cost_key(ok[b]["cost"]))
    cheaper = min(tied, key=lambda b: cost_key(ok[b]["cost"]))
    second = max((b for b in ok if b != best), key=lambda b: ok[b]["val_acc"], default=None)
    others = [b for b in tied if b != best] or [second or best]
    noise = noise_of[pick] if pick != best else max(noise_of[b] for b in others)
    ratio = lambda a, b, k: (ok[a]["cost"].get(k) or 0) / max(ok[b]["cost"].get(k) or 1e-30, 1e-30)  # noqa: E731
    noise_words = (f"the validation noise ({100 * noise:.1f} points, {'paired over' if paired else 'on'} {n_val} "
                   "items)")
    saving = lambda a, b: (f"{ratio(a, b, 'flops_per_item'):.1f}x fewer FLOPs per prediction"  # noqa: E731
                           + _latency_words(ratio(a, b, "latency_ms") if ok[b]["cost"].get("latency_ms") else None))
    if pick != best:
        why = (f"{pick} ({100 * ok[pick]['val_acc']:.1f}% on validation) is within {noise_words} and "
               f"{100 * margin:.0f} points of the best, {best} ({100 * top:.1f}%), and cheaper: {saving(best, pick)}")
    else:
        why = f"{best} is the most accurate on validation ({100 * top:.1f}%)"
        if second and second not in tied:
            why += (f", {100 * (top - ok[second]['val_acc']):.1f} points above {second}: beyond {noise_words}")
        elif len(tied) > 1:
            why += f"; the others are within {noise_words}"
        if second and ratio(best, second, "flops_per_item") > 1.05:
            why += f", at {ratio(best, second, 'flops_per_item'):.1f}x the FLOPs per prediction of {second}"
        if cheaper != pick:
            why += (f". Alternative: {cheaper} is {100 * (top - ok[cheaper]['val_acc']):.1f} points lower on "
                    f"validation (within the noise, but more than {100 * margin:.0f} points) and needs "
                    f"{saving(best, cheaper)}: deploy it if that cost matters more than those points")
    return {"recommended": pick, "best_on_validation": best, "tied": sorted(tied, key=list(ok).index),
            "alternative": cheaper if cheaper != pick else None, "validation_noise": noise, "paired": paired,
            "margin": margin, "why": why}
