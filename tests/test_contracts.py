"""Contract tests over every registry: each backbone, family and modality honours the interface the shared code
relies on (timm's model contract; modalities/base.Modality). A new entry gets these checks for free."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from headstart.core.config import RunConfig
from headstart.core.errors import UserError
from headstart.modalities import MODALITIES, Modality
from headstart.models.archs import arch_meta
from headstart.models.bnfold import fold_pairs, folded_batchnorm
from headstart.models.factory import create_backbone, load_folder, save_folder
from headstart.models.groups import block_groups
from headstart.models.registry import BACKBONES, FAMILIES, BackboneSpec
from headstart.pipeline import arms
from headstart.pipeline.context import build_context
from headstart.training.strategies import STRATEGIES
from headstart.training.trunk_cache import trunk_split


def _sample(spec: BackboneSpec, n: int = 2):
    """A model input of the spec's family, built without any data."""
    g = torch.Generator().manual_seed(0)
    if spec.family == "bert":
        return {"input_ids": torch.randint(100, 2000, (n, 12), generator=g), "attention_mask": torch.ones(n, 12,
                                                                                                         dtype=torch.long)}
    if spec.family == "whisper":
        return {"mel": torch.randn(n, 80, 60, generator=g), "frames": torch.tensor([30] * n)}
    return torch.randn(n, 3, 64, 64, generator=g)


def _offline(name: str):
    try:
        return create_backbone(name, 3, pretrained=name in BACKBONES)
    except UserError as e:          # a weights package that is not installed
        pytest.skip(str(e))


@pytest.mark.parametrize("name", [*BACKBONES, "timm:resnet18"])
def test_backbone_contract(name, tmp_path):
    """Feature width, head, block groups covering every parameter once, and a save -> load round trip that
    reproduces the outputs (timm:resnet18 is built offline with random weights)."""
    model, spec = _offline(name)
    model.eval()
    x = _sample(spec)
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    assert feats.shape == (2, model.num_features) and logits.shape == (2, 3)
    groups = block_groups(model)
    names = [n for g in groups for n in g]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters()) and len(names) == len(set(names))
    head = {n for n, p in model.named_parameters() if any(p is q for q in model.get_classifier().parameters())}
    assert set(groups[0]) == head                     # group 0 is exactly the classifier
    save_folder(tmp_path / "m", model, spec, ["a", "b", "c"], spec.input_size)
    loaded, lspec, classes, _ = load_folder(tmp_path / "m")
    assert classes == ["a", "b", "c"] and lspec.family == spec.family
    with torch.no_grad():
        assert torch.allclose(loaded(x), logits, atol=1e-5)
    model.reset_classifier(5)
    with torch.no_grad():
        assert model(x).shape == (2, 5)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_modules_implement_the_builder_interface(family):
    mod = importlib.import_module(FAMILIES[family])
    for fn in ("build", "from_folder", "save_extras", "onnx_example"):
        assert callable(getattr(mod, fn)), f"{family} lacks {fn}"


def test_resnet_gets_the_trunk_cache_and_batchnorm_folding():
    """Architecture quirks are data (models/archs.py): a timm ResNet folds its BatchNorms and splits into a cached
    trunk and a trainable top exactly as EfficientNet does."""
    model, spec = create_backbone("timm:resnet18", 3, pretrained=False)
    assert arch_meta(model) is not None
    model.eval()
    for m in model.modules():              # non-trivial statistics, so folding has something to fold
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        assert len(fold_pairs(model)) >= 17          # stem + two per BasicBlock
        with folded_batchnorm(model):
            assert torch.allclose(model(x), ref, atol=1e-4)
    cfg = RunConfig(unfreeze_groups=2, bn_policy="eval-all", lr_body=1e-4, lr_decay=0.3, epochs=2, unfreeze_every=1)
    strat = STRATEGIES["finetune"](cfg)
    plan = strat.plan(model)
    k = trunk_split(model, plan, strat.bn_policy)
    assert k is not None and k >= 1                  # the top two groups train; the stages below are cached
    from headstart.training.trunk_cache import CachedTrunk
    ct = CachedTrunk(None, None, {}, model, k, views=1)
    with torch.no_grad():
        assert torch.allclose(ct._top(ct._trunk(x)), ref, atol=1e-5)


def test_whisper_export_keeps_its_own_encoder_size(tmp_path):
    """An hf: Whisper encoder that is not tiny.en reloads with its own config (it used to come back as tiny.en)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from headstart.models.whisper import WhisperClassifier
    config = transformers.WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
                                        decoder_layers=1, num_mel_bins=80, max_source_positions=1500)
    torch.manual_seed(0)
    model = WhisperClassifier(WhisperEncoder(config), 4).eval()
    spec = BackboneSpec("hf:openai/whisper-small-like", "whisper-encoder", 3000, 1.0, (0.0,) * 3, (1.0,) * 3,
                        "hf-hub", 0, "audio", "openai/whisper-small-like")
    save_folder(tmp_path / "m", model, spec, list("abcd"), 3000)
    loaded, *_ = load_folder(tmp_path / "m")
    assert loaded.encoder.config.d_model == 64 and len(loaded.encoder.layers) == 2
    x = _sample(spec)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def _tiny_data(name: str, root):
    if name == "image":
        from conftest import make_image_folder
        return make_image_folder(root / "imgs", per_class=8, extras=False)
    if name == "text":
        from test_text import make_csv
        return make_csv(root / "t.csv", per_class=8)
    pytest.importorskip("soundfile")
    from test_audio import tone
    for k, f in enumerate((300.0, 1500.0)):
        (root / "clips" / f"c{k}").mkdir(parents=True)
        for i in range(6):
            tone(root / "clips" / f"c{k}" / f"{i}.wav", f * (1 + 0.05 * i), seed=i)
    return root / "clips"


@pytest.mark.parametrize("name", MODALITIES)
def test_modality_contract(name, tmp_path):
    """Each modality on tiny generated data: detected from its data, implements the Protocol, and its datasets,
    features, classic baseline, evidence and predict agree in shape with the model it feeds."""
    data = _tiny_data(name, tmp_path)
    try:
        ctx = build_context(RunConfig(data=str(data), out=str(tmp_path / "run"), image_size=32, probe_cs=[1.0]),
                            log=lambda *a: None)
    except UserError as e:
        pytest.skip(str(e))
    mod = ctx.modality
    assert isinstance(mod, Modality) and mod.name == name and ctx.cfg.modality == name
    assert set(mod.defaults) <= set(RunConfig().to_dict())
    model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes))
    ds = mod.dataset(ctx.inputs, ctx.split["train"], train=True)
    batch = ds.collate([ds[i] for i in range(2)]) if hasattr(ds, "collate") else None
    x = batch[0] if batch else torch.stack([ds[i][0] for i in range(2)])
    with torch.no_grad():
        assert model.eval()(mod.batch_fn(ctx.inputs)(x)).shape == (2, len(ctx.ds.classes))
    feats = mod.embed(ctx.inputs, model)
    assert feats.shape == (len(ctx.ds), model.num_features) and np.isfinite(feats).all()
    idx = ctx.split["train"] + ctx.split["val"]
    assert len(mod.classic_inputs(ctx.inputs)) == len(ctx.ds) and mod.raw_features(ctx.inputs, idx).shape[0] == len(idx)
    tr = ctx.split["train"]
    items = mod.classic_inputs(ctx.inputs)
    pipe = mod.classic_pipeline(1.0, 0).fit([items[i] for i in tr], [ctx.ds.labels[i] for i in tr])
    assert pipe.predict_proba([items[i] for i in ctx.split["test"]]).shape[1] == len(set(ctx.ds.labels[i] for i in tr))
    shift = mod.shift_evidence(ctx.inputs, idx)
    assert isinstance(shift, dict) and all(isinstance(s, str) for s in mod.evidence_lines(shift))
    assert isinstance(mod.feature_variant(ctx.inputs), str) and isinstance(mod.input_description(ctx.size), str)
    assert isinstance(mod.finetune_advice(True), str)
    assert mod.hidden_gain() is None or len(mod.hidden_gain()) == 2
    assert arms.predict_probs(model, ctx, ctx.split["test"]).shape == (len(ctx.split["test"]), len(ctx.ds.classes))
    from headstart.outputs.export import save_model
    from headstart.outputs.predict import predict
    save_model(tmp_path / "model", model, ctx.spec, ctx.ds.classes, ctx.size)
    one = str(ctx.ds.root / ctx.ds.paths[0]) if name != "text" else ctx.ds.items[0]
    rows = predict(tmp_path / "model", [one], runtime="torch")
    assert rows and rows[0]["label"] in ctx.ds.classes
