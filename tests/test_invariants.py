"""Invariants of the transfer strategies, checked on real packaged Lite0 weights at a tiny input size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.pipeline import arms, frozen, grid, units
from headstart.models.groups import block_groups
from headstart.models.factory import create_backbone
from headstart.core.config import RunConfig
from headstart.pipeline.context import build_context as prepare
from headstart.app.run import run_experiment
from headstart.modalities.image import ImageTensors, embed, preprocess
from headstart.training.loop import fit, overfitting
from headstart.training.strategies import STRATEGIES


def build(ctx, name, seed=0):
    strat = STRATEGIES[name](ctx.cfg)
    return arms.build_model(ctx, strat, seed), strat


def _clone(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def ctx(tiny_folder, tmp_path):
    cfg = RunConfig(data=str(tiny_folder), out=str(tmp_path / "run"), image_size=32, epochs=2, batch_size=8,
                    unfreeze_groups=2, unfreeze_every=1, lr_head=1e-3, lr_body=1e-4, lr_decay=0.5,
                    probe_cs=[0.1, 1.0])
    return prepare(cfg, log=lambda *a: None)


def _fit(ctx, model, strat, epochs=2, restore_best=False):
    tr = ImageTensors(ctx.ds.items, ctx.ds.labels, ctx.split["train"], ctx.size, "crop-flip")
    va = ImageTensors(ctx.ds.items, ctx.ds.labels, ctx.split["val"], ctx.size)
    return fit(ctx.fabric, model, strat, tr, va, batch_fn=lambda x: preprocess(x, ctx.spec), max_epochs=epochs,
               patience=10, batch_size=8, weight_decay=0.0, seed=0, restore_best=restore_best)


def test_feature_extraction_leaves_backbone_bit_identical(ctx):
    model, _ = create_backbone("efficientnet_lite0", 2)
    model.train()        # even if handed a model in train mode, embedding must not touch BN statistics
    before = _clone(model)
    embed(model, ctx.spec, ctx.ds.items, ctx.size)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_linear_probe_export_keeps_pretrained_backbone(ctx):
    units.run_unit(ctx, "linear-probe", 0)
    results = {"recommended": "linear-probe"}
    from headstart.outputs.export import export_recommended
    export_recommended(ctx, results)
    from headstart.outputs.predict import load_model
    exported, *_ = load_model(ctx.run_dir / "model")
    pre, _ = create_backbone("efficientnet_lite0", 2)
    e, p = exported.state_dict(), pre.state_dict()
    head = set(block_groups(pre)[0])
    assert all(torch.equal(e[k], p[k]) for k in p if k not in head)
    assert not torch.equal(e["classifier.weight"], p["classifier.weight"])


def test_lpft_head_starts_from_probe(ctx):
    model, strat = build(ctx, "finetune")
    pr = frozen.probe(ctx)
    assert torch.equal(model.classifier.weight, torch.from_numpy(pr.train_weight))
    assert torch.equal(model.classifier.bias, torch.from_numpy(pr.train_bias))


def test_finetune_frozen_blocks_and_bn_statistics_unchanged(ctx):
    model, strat = build(ctx, "finetune")
    before = _clone(model)
    groups = block_groups(model)
    _fit(ctx, model, strat)
    after = model.state_dict()
    frozen = [n for g in groups[3:] for n in g]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    stats = [k for k in before if "running_" in k]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)      # bn_policy eval-all
    assert any(not torch.equal(before[n], after[n]) for n in groups[1])       # the top group did train
    assert any(not torch.equal(before[n], after[n]) for n in groups[2])       # unfrozen at epoch 1


def test_train_unfrozen_policy_updates_only_unfrozen_statistics(ctx):
    ctx.cfg.bn_policy = "train-unfrozen"
    model, strat = build(ctx, "finetune")
    before = _clone(model)
    groups = block_groups(model)
    _fit(ctx, model, strat)
    after = model.state_dict()
    top_stats = [k for k in before if "running_mean" in k and k.startswith("blocks.6")]
    deep_stats = [k for k in before if "running_mean" in k and k.startswith(("blocks.0", "blocks.3", "bn1"))]
    assert any(not torch.equal(before[k], after[k]) for k in top_stats)
    assert all(torch.equal(before[k], after[k]) for k in deep_stats)
    assert len(groups) == 9


def test_lr_groups_and_unfreeze_schedule(ctx):
    model, strat = build(ctx, "finetune")
    plan = strat.plan(model)
    assert [g["lr"] for g in plan.param_groups] == pytest.approx([1e-3, 1e-4, 5e-5])
    params = dict(model.named_parameters())
    ev0 = strat.on_epoch_start(model, plan, 0)
    g = plan.groups
    assert params[g[1][0]].requires_grad and not params[g[2][0]].requires_grad
    assert not params[g[3][0]].requires_grad
    ev1 = strat.on_epoch_start(model, plan, 1)
    assert params[g[2][0]].requires_grad and not params[g[3][0]].requires_grad
    assert len(ev0) == 2 and len(ev1) == 1 and "group 2" in ev1[0]
    hist = _fit(ctx, *build(ctx, "finetune"), epochs=2).history
    assert hist[0]["lr"] == pytest.approx([1e-3, 1e-4, 5e-5])          # cosine starts at the base LRs
    assert hist[1]["trainable_params"] > hist[0]["trainable_params"]


def test_scratch_starts_from_random_weights(ctx):
    scratch, _ = build(ctx, "scratch")
    pre, _ = create_backbone("efficientnet_lite0", 2)
    s, p = scratch.state_dict(), pre.state_dict()
    weights = [k for k in p if k.endswith("weight") and p[k].ndim == 4]
    assert weights and not any(torch.equal(s[k], p[k]) for k in weights)
    assert all(v.requires_grad for v in scratch.parameters())


def test_overfitting_flag():
    def h(tr, va):
        return [{"train_loss": a, "val_loss": b} for a, b in zip(tr, va)]
    assert overfitting(h([1, .8, .6, .4, .2], [1, .9, 1.0, 1.1, 1.2]))
    assert not overfitting(h([1, .8, .6, .4, .2], [1, .9, .8, .85, .8]))
    assert not overfitting(h([1, 1.1, 1.2, 1.3], [1, 1.1, 1.2, 1.3]))   # both rising: not overfitting


def test_resume_skips_finished_units(tiny_folder, tmp_path, monkeypatch):
    cfg = dict(data=str(tiny_folder), out=str(tmp_path / "run"), image_size=32, epochs=1, batch_size=8,
               strategies=["linear-probe", "scratch"], scratch_epochs=1, probe_cs=[1.0])
    first = run_experiment(RunConfig(**cfg), log=lambda *a: None).to_dict()

    def boom(*a, **k):
        raise AssertionError("a finished unit was retrained")
    monkeypatch.setattr(grid, "run_unit", boom)
    second = run_experiment(RunConfig(**cfg), log=lambda *a: None).to_dict()
    for s in ("linear-probe", "scratch"):
        assert second["strategies"][s]["accuracy"] == first["strategies"][s]["accuracy"]


def test_best_weights_restored(ctx):
    model, strat = build(ctx, "scratch")
    res = _fit(ctx, model, strat, epochs=3, restore_best=True)
    va = ImageTensors(ctx.ds.items, ctx.ds.labels, ctx.split["val"], ctx.size)
    x, y = next(iter(torch.utils.data.DataLoader(va, batch_size=99)))
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(preprocess(x, ctx.spec)), y).item()
    assert loss == pytest.approx(min(h["val_loss"] for h in res.history + [res.start_val]), rel=1e-4)
    assert res.best()["val_loss"] == pytest.approx(loss, rel=1e-4)


def test_same_seed_same_metrics(ctx):
    a = _fit(ctx, *build(ctx, "scratch"), epochs=1).history[0]
    b = _fit(ctx, *build(ctx, "scratch"), epochs=1).history[0]
    assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert np.isfinite(a["train_loss"])


def test_trunk_cache_matches_uncached_training_without_augmentation(ctx):
    """With no augmentation the cached trunk sees exactly the uncached inputs: the same training trajectory up to
    the float16 storage of the cached activations; the frozen trunk stays bit-identical and forward is restored."""
    from headstart.training.trunk_cache import CachedTrunk, trunk_split
    ctx.cfg.augment = "none"
    histories, states = [], []      # CachedTrunk's default dtype is float32 (bf16 only when asked for)
    for cached in (False, True):
        model, strat = build(ctx, "finetune")
        before = _clone(model)
        plan = strat.plan(model)
        va = ImageTensors(ctx.ds.items, ctx.ds.labels, ctx.split["val"], ctx.size)
        tr = ImageTensors(ctx.ds.items, ctx.ds.labels, ctx.split["train"], ctx.size)      # centre crops only
        kw = dict(max_epochs=2, patience=10, batch_size=8, weight_decay=0.0, seed=0, restore_best=False)
        if cached:
            k = trunk_split(model, plan, strat.bn_policy)
            assert k == 5                                        # top 2 groups: blocks.5 and up train
            with CachedTrunk(ctx.modality, ctx.inputs, ctx.split, model, k, views=1) as ct:
                res = fit(ctx.fabric, model, strat, ct.train_ds, ct.val_ds, batch_fn=ct.batch_fn, **kw)
            assert "forward" not in vars(model)                   # the full forward is back
        else:
            res = fit(ctx.fabric, model, strat, tr, va, batch_fn=lambda x: preprocess(x, ctx.spec), **kw)
        histories.append([h["val_loss"] for h in res.history])
        states.append(model.state_dict())
        trunk = [n for n in before if n.startswith(("conv_stem", "bn1", "blocks.0", "blocks.4"))]
        assert all(torch.equal(before[n], model.state_dict()[n]) for n in trunk)
    assert histories[1] == pytest.approx(histories[0], rel=2e-2)


def _randomised_bn(model):
    """Pretrained-looking BatchNorms: statistics and affine weights far from the identity, so folding is not trivial."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.05)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
    return model


def test_folded_batchnorm_is_the_same_function_with_the_same_gradients():
    """Oracle: eval-mode BatchNorm folded into its convolution gives the unfolded outputs and gradients (conv
    weights, gamma, beta); every BatchNorm of Lite0 folds; parameters, state_dict keys and forward are untouched."""
    from headstart.models.bnfold import folded_batchnorm
    model = _randomised_bn(create_backbone("efficientnet_lite0", 3, pretrained=False)[0]).eval()
    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([0, 1, 2, 1])
    keys = list(model.state_dict())

    def run():
        model.zero_grad(set_to_none=True)
        out = model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    out0, grads0 = run()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with folded_batchnorm(model) as pairs:
        assert pairs == n_bn == 49
        out1, grads1 = run()
        assert list(model.state_dict()) == keys
    assert torch.allclose(out1, out0, rtol=1e-4, atol=1e-4 * out0.abs().max().item())
    for n, g0 in grads0.items():
        assert torch.allclose(grads1[n], g0, rtol=1e-3, atol=1e-4 * g0.abs().max().item() + 1e-12), n
    assert not any("forward" in vars(m) for m in model.modules())    # classes' own forward again
    assert torch.equal(model(x), model(x)) and torch.allclose(model(x), out0, atol=1e-6 * out0.abs().max().item())


def test_folded_batchnorm_leaves_train_mode_batchnorm_alone():
    """A BatchNorm in train mode (scratch, train-unfrozen) runs unfolded: bit-identical outputs and statistics."""
    from headstart.models.bnfold import folded_batchnorm
    torch.manual_seed(0)
    a = _randomised_bn(create_backbone("efficientnet_lite0", 2, pretrained=False)[0]).train()
    b = _randomised_bn(create_backbone("efficientnet_lite0", 2, pretrained=False)[0]).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 64, 64)
    with folded_batchnorm(b):
        out_b = b(x)
    assert torch.equal(a(x), out_b)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.bn1.running_mean, _randomised_bn(create_backbone(
        "efficientnet_lite0", 2, pretrained=False)[0]).bn1.running_mean)   # statistics did move


def test_text_duplicates_exact_and_normalised_are_judged_near_ones_only_reported_as_similar():
    """TREC (benchmarks/text_near_dups.py): distinct questions on one subject sit at cosine 0.90-0.97 under
    different labels; only the same text (exactly, or ignoring case, punctuation and spacing) is a conflict."""
    import hashlib
    from pathlib import Path
    from headstart.core.dataset import LabeledSet
    from headstart.modalities.text_files import normalised
    from headstart.stats.leakage import dedupe_train, find_duplicates
    texts = ["Who invented the telephone ?", "When was the telephone invented ?", "What are the Twin Cities ?",
             "what are the twin cities?", "How far is the moon ?", "How far is the moon ?"]
    labels = [0, 1, 0, 1, 1, 1]
    ds = LabeledSet(root=Path("."), classes=["HUM", "NUM"], paths=[f"q.csv:{i + 2}" for i in range(6)],
                    labels=labels, items=texts, hashes=[hashlib.sha1(t.encode()).hexdigest() for t in texts],
                    match_keys=[normalised(t) for t in texts])
    split = {"train": [0, 2, 4], "val": [1], "test": [3, 5]}
    feats = np.eye(6)
    feats[1] = feats[0] * 0.96 + feats[1] * 0.28          # cosine 0.96 with item 0
    rep = find_duplicates(ds, split, feats, 0.9, near_kind="similar")
    kinds = {(p["ia"], p["ib"]): (p["kind"], p["match"]) for p in rep["_pairs"]}
    assert kinds == {(0, 1): ("similar", "near"), (2, 3): ("conflict", "normalised"), (4, 5): ("leak", "exact")}
    assert rep["counts"]["conflict"] == 1 and rep["counts"]["similar"] == 1
    assert [p["kind"] for p in rep["_pairs"]][-1] == "similar"          # listed after the real findings
    assert dedupe_train(rep, split) == [2, 4]                           # similar pairs are never dropped
    # images keep judging near copies like exact ones
    assert {p["kind"] for p in find_duplicates(ds, split, feats, 0.9)["_pairs"]} == {"conflict", "leak"}
