"""The strategy registry (explicit, with a contract over every entry) and the LoRA arm (peft)."""
from __future__ import annotations

import pytest
import torch

from headstart.core.config import RunConfig
from headstart.models.factory import create_backbone
from headstart.training.strategies import (DEFAULT, ORDER, STRATEGIES, TRANSFER, FineTune, FreezePlan, register,
                                           unregister)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_registered_strategy_keeps_the_contract(name):
    """What the pipeline reads of every entry, and for trained arms: the plan covers what trains, the hooks run."""
    from headstart.pipeline.arms import RUNNERS
    cls = STRATEGIES[name]
    assert cls.name == name and cls.label and cls.runner in RUNNERS and cls.exports in ("network", "probe-head", "")
    assert len({STRATEGIES[s].order for s in ORDER}) == len(ORDER)            # a strict tie-break order
    assert (name in TRANSFER) == cls.transfer and (name in DEFAULT) == cls.default
    strat = cls(RunConfig(unfreeze_groups=2, unfreeze_every=1, epochs=2, lr_body=1e-4, lr_decay=0.5))
    assert strat.describe()["strategy"] == name
    if not cls.trains_network:
        with pytest.raises(NotImplementedError):
            strat.plan(None)
        return
    model, _ = create_backbone("efficientnet_lite0", 3, pretrained=False)
    plan = strat.plan(model)
    planned = {id(p) for g in plan.param_groups for p in g["params"]}
    for epoch in range(strat.max_epochs()):
        strat.on_epoch_start(model, plan, epoch)
        live = {id(p) for p in model.parameters() if p.requires_grad}
        assert live and live <= planned             # what ever trains is in the optimizer from the start
    assert isinstance(strat.describe(plan), dict)


class LastBlock(FineTune):
    """Only the top block group trains (a user's own variant: one class)."""
    name, label, short, color, order = "lastblock", "fine-tune (top block only)", "transfer: top block", "#8c564b", 2.5
    default = False

    def plan(self, model):
        plan = super().plan(model)
        return FreezePlan(plan.groups, 1, plan.param_groups[:2])


def test_a_strategy_registered_from_outside_runs_end_to_end(tiny_folder, tmp_path):
    """`class LastBlock(FineTune)` was never registered (the registry read direct subclasses only): with @register
    it is one class, and a run trains, reports and ranks it like the built-in arms."""
    from headstart.app.run import run_experiment
    register(LastBlock)
    try:
        assert "lastblock" in ORDER and "lastblock" in TRANSFER and "lastblock" not in DEFAULT
        res = run_experiment(RunConfig(data=str(tiny_folder), out=str(tmp_path / "run"), image_size=32, epochs=1,
                                       strategies=["linear-probe", "lastblock"], assess=False, check_labels=False),
                             log=lambda *a: None)
        arm = res.strategies["lastblock"]
        assert arm.ok and arm.policy["strategy"] == "lastblock" and len(arm.policy["groups"]) == 2
        assert "lastblock" in (tmp_path / "run" / "report.md").read_text()
    finally:
        unregister("lastblock")
    assert "lastblock" not in ORDER
    with pytest.raises(ValueError):
        register(type("Clash", (FineTune,), {"name": "finetune"}))


def _lora_model(name: str = "efficientnet_lite0"):
    from headstart.training.strategies import LoRA
    model, _ = create_backbone(name, 3, pretrained=False)
    strat = LoRA(RunConfig(lora_rank=4))
    return model, strat


def test_lora_trains_only_the_adapters_and_the_head_and_merges_into_the_plain_network():
    """Invariants: after plan() only the head and the adapters train; a training step leaves every base weight
    bit-identical; finish() merges the adapters, so the network has the plain architecture (its state dict loads
    into a fresh backbone) and computes what the adapted one computed."""
    pytest.importorskip("peft")
    torch.manual_seed(0)
    model, strat = _lora_model()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    plan = strat.plan(model)
    head = set(plan.groups[0])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == head | set(plan.groups[1]) and all("lora_" in n for n in plan.groups[1])
    share = sum(p.numel() for n, p in model.named_parameters() if n in trainable) / sum(
        p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    assert share < 0.15
    strat.on_epoch_start(model, plan, 0)
    opt = torch.optim.AdamW([p for g in plan.param_groups for p in g["params"]], lr=1e-2)
    x = torch.randn(4, 3, 64, 64)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
        opt.step()
    after = dict(model.named_parameters())
    frozen = [n for n in base if n not in head]
    renamed = {n: n.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias") for n in frozen}
    assert all(torch.equal(base[n], (after.get(n) if n in after else after[renamed[n]])) for n in frozen)
    model.eval()
    with torch.no_grad():
        adapted = model(x)
    kept = strat.finish(model)
    assert kept and all("lora_" in n for n in kept)
    with torch.no_grad():
        merged = model(x)
    assert torch.allclose(adapted, merged, atol=1e-4)
    fresh, _ = create_backbone("efficientnet_lite0", 3, pretrained=False)
    fresh.load_state_dict(model.state_dict())                   # strict: the plain architecture again


@pytest.mark.parametrize("name", ["minilm_l6", "whisper_tiny_en"])
def test_lora_targets_the_attention_and_feed_forward_layers_of_encoders(name):
    """BERT-family text encoders and the Whisper encoder: adapters on query/key/value/dense (q/k/v/out_proj, fc1,
    fc2), never on the head; merged back, the state dict is the plain one."""
    pytest.importorskip("peft")
    from headstart.models.registry import BACKBONES
    if name not in BACKBONES:
        pytest.skip(f"{name} not in the registry")
    model, strat = _lora_model(name)
    keys = set(model.state_dict())
    targets = strat.targets(model)
    assert targets and not any(t.startswith("classifier") or t.startswith("head") for t in targets)
    plan = strat.plan(model)
    assert len(plan.groups[1]) == 2 * len(targets)              # lora_A and lora_B per adapted layer
    strat.finish(model)
    assert set(model.state_dict()) == keys


def test_lora_runs_end_to_end_exports_the_merged_network_and_predict_agrees(tiny_folder, tmp_path):
    """A run with --strategies linear-probe,lora: the lora unit keeps its adapter beside the merged weights, and the
    exported model (plain architecture) predicts what the unit measured on its test items."""
    pytest.importorskip("peft")
    import json
    import numpy as np
    from headstart.app.run import run_experiment
    from headstart.outputs.export import export_recommended
    from headstart.outputs.predict import predict
    from headstart.pipeline.suggest import load_run
    out = tmp_path / "run"
    res = run_experiment(RunConfig(data=str(tiny_folder), out=str(out), image_size=32, epochs=2,
                                   strategies=["linear-probe", "lora"], assess=False), log=lambda *a: None)
    arm = res.strategies["lora"]
    assert arm.ok and arm.policy["adapter_params"] < 0.1 * arm.total_params
    unit = json.loads((out / "lora" / "seed0" / "result.json").read_text())
    assert (out / "lora" / "seed0" / "adapter.safetensors").exists() and 0 < unit["adapter_mb"] < 2
    ctx = load_run(out, log=lambda *a: None)
    export_recommended(ctx, {**res.to_dict(), "recommended": "lora"})
    items = [str(tiny_folder / ctx.ds.paths[i]) for i in ctx.split["test"]]
    rows = predict(out / "model", items, top=2)
    said = np.array([[dict(r["top"])[c] for c in ctx.ds.classes] for r in rows])
    assert np.abs(said - np.asarray(unit["test_probs"])).max() < 2e-3
