"""What differs between modalities, in one place: loading, model inputs, feature extraction, classic baseline.

    mod = MODALITIES[detect_modality(cfg.data, cfg.modality)]()
    ds = mod.load(cfg, spec, size); mod.prepare(ctx)
    mod.dataset(ctx, indices, train=True)   # torch Dataset (with .collate if batches need padding)
    mod.batch_fn(ctx)(x)                    # what the model's forward receives
    mod.embed(ctx, model, progress)         # frozen pre-logit features for every item

Everything else (split, strategies, training loop, evaluation, report) is shared.
"""
from __future__ import annotations

from pathlib import Path

from headstart.errors import UserError


class ImageModality:
    name = "image"
    default_backbone = "efficientnet_lite0"
    cpu_bf16_training = False   # Lite0 training step in bf16 on the CPU: 9.5 vs 15.8 img/s (depthwise convolutions)
    unit_gib = 4.2              # peak memory of one scratch unit at 224 px (benchmarks/README.md)
    # top 2 block groups, body LR 10x below the head, 0.3x per group deeper (on hymenoptera the reference LP-FT
    # used 3e-5; BatchNorm statistics stay frozen)
    defaults = {"epochs": 10, "lr_body": 1e-4, "lr_decay": 0.3, "unfreeze_groups": 2, "unfreeze_every": 1,
                "scratch_lr": 3e-3}

    def load(self, cfg, spec, size):
        from headstart.data import load_image_folder
        return load_image_folder(cfg.data, short_side=spec.short_side(size))

    def prepare(self, ctx) -> dict:
        return {}

    def dataset(self, ctx, indices, train: bool = False):
        from headstart.features import ImageTensors
        cfg = ctx.cfg
        return ImageTensors(ctx.ds.items, ctx.ds.labels, indices, ctx.size, cfg.augment if train else "none",
                            cfg.crop_scale)

    def batch_fn(self, ctx):
        from headstart.features import preprocess
        return lambda x: preprocess(x, ctx.spec)

    def embed(self, ctx, model, progress=None):
        from headstart.features import embed
        return embed(model, ctx.spec, ctx.ds.items, ctx.size, progress=progress, dtype=self.feature_dtype(ctx),
                     device=str(ctx.fabric.device))

    def feature_dtype(self, ctx) -> str:
        from headstart.features import feature_dtype
        return feature_dtype(ctx.cfg.feature_dtype, str(ctx.fabric.device))

    def raw_features(self, ctx, indices):
        """What scratch starts from, for the assessment's k-NN: 24x24 centre-cropped pixels, mean image removed."""
        raw = self.classic_inputs(ctx, indices)
        return raw - raw.mean(0)

    def classic_inputs(self, ctx, indices=None):
        """Each image centre-cropped to a square and shrunk to 24x24 RGB: the pixels a classic model sees."""
        import numpy as np
        import torch.nn.functional as F

        from headstart.device import to_numpy
        rows = []
        for i in range(len(ctx.ds)) if indices is None else indices:
            x = ctx.ds.items[i].float() / 255
            side = min(x.shape[-2:])
            top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
            x = x[:, top: top + side, left: left + side][None]
            rows.append(to_numpy(F.interpolate(x, size=(24, 24), mode="bilinear", antialias=True).flatten()))
        return np.stack(rows)

    def classic_pipeline(self, C: float, seed: int):
        """24x24 RGB pixels, standardised, logistic regression: the no-pretraining baseline for small images."""
        return _standardised_logreg(C, seed)


class TextModality:
    name = "text"
    default_backbone = "minilm_l6"
    cpu_bf16_training = True    # MiniLM-size encoder, training step on an AMX CPU in bf16: 1.15-1.3x with
                                # variable-length batches (1.6x at one fixed length; benchmarks/README.md)
    unit_gib = 3.0
    # small encoders fine-tune best whole: all layers and embeddings at once (from the probe's head: LP-FT),
    # layer-wise LR decay 0.8 (the usual range for BERT-family models), 4 epochs max (3 is the standard recipe;
    # early stopping watches the rest). Gradual unfreezing reached only 4 of 7 groups in 4 epochs: 0.940 on TREC.
    # scratch: a randomly initialised 22M-parameter transformer diverged to one class at 3e-3 (TREC 13%)
    defaults = {"epochs": 4, "lr_body": 8e-5, "lr_decay": 0.8, "unfreeze_groups": 99, "unfreeze_every": -1,
                "scratch_lr": 1e-4}

    def load(self, cfg, spec, size):
        from headstart.text import load_text
        return load_text(cfg.data, cfg.text_col, cfg.label_col, cfg.encoding, cfg.test_file)

    def prepare(self, ctx) -> dict:
        from headstart.text import tokenize
        ctx.tokens, stats = tokenize(ctx.spec.path, ctx.ds.items, ctx.size)
        return stats

    def dataset(self, ctx, indices, train: bool = False):
        from headstart.text import TokenBatches
        return TokenBatches(ctx.tokens, ctx.ds.labels, indices, ctx.modality_stats.get("pad_id", 0))

    def batch_fn(self, ctx):
        return lambda x: x

    def embed(self, ctx, model, progress=None):
        from headstart.text import embed_texts
        return embed_texts(model, ctx.tokens, progress=progress)

    def classic_inputs(self, ctx):
        return ctx.ds.items

    def raw_features(self, ctx, indices):
        """What the classic baseline starts from, for the assessment's k-NN: TF-IDF word 1-2-grams of the texts (the
        character n-grams of the classic arm cost more than the feature pass itself; no labels used)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform([ctx.ds.items[i] for i in indices])

    def classic_pipeline(self, C: float, seed: int):
        """TF-IDF word 1-2-grams + character 2-5-grams, logistic regression: the baseline practitioners use."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union
        feats = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                           TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2))
        return make_pipeline(feats, LogisticRegression(C=C, max_iter=3000, random_state=seed))


class AudioModality:
    name = "audio"
    default_backbone = "whisper_tiny_en"
    cpu_bf16_training = True    # Whisper tiny encoder training step on an AMX CPU in bf16: 1.4-1.75x on
                                # clip-length batches (1.9x on 30 s input; benchmarks/README.md)
    unit_gib = 3.0
    # a 4-layer encoder: all layers at once from the probe's head, LLRD 0.8, as for text
    defaults = {"epochs": 6, "lr_body": 5e-5, "lr_decay": 0.8, "unfreeze_groups": 99, "unfreeze_every": -1,
                "scratch_lr": 3e-3}

    def load(self, cfg, spec, size):
        from headstart.audio import load_audio_folder
        return load_audio_folder(cfg.data)

    def prepare(self, ctx) -> dict:
        from headstart.audio import log_mel
        ctx.tokens = [log_mel(x, pad_to_30s=ctx.cfg.pad_to_30s) for x in ctx.ds.items]
        secs = [len(x) / 16000 for x in ctx.ds.items]
        return {**ctx.ds.stats, "mean_seconds": float(sum(secs) / len(secs)), "max_seconds": max(secs),
                "encoder_input": "padded to 30 s (Whisper's own)" if ctx.cfg.pad_to_30s else
                "each clip's own length (positional embedding sliced)"}

    def dataset(self, ctx, indices, train: bool = False):
        from headstart.audio import MelBatches
        return MelBatches(ctx.tokens, ctx.ds.labels, indices, ctx.cfg.pad_to_30s)

    def batch_fn(self, ctx):
        return lambda x: x

    def embed(self, ctx, model, progress=None):
        import numpy as np
        import torch

        from headstart.device import to_device, to_numpy
        order = np.argsort([m.shape[1] for m in ctx.tokens])       # similar lengths together: little padding
        ds = self.dataset(ctx, order)
        out = np.zeros((len(order), model.num_features), dtype=np.float32)
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), 64):
                x, _ = ds.collate([ds[i] for i in range(start, min(len(order), start + 64))])
                out[order[start: start + 64]] = to_numpy(model.forward_features(to_device(x, model)))
                if progress:
                    progress(len(x["frames"]))
        return out

    def classic_inputs(self, ctx):
        from headstart.audio import mfcc_stats
        return [mfcc_stats(m) for m in ctx.tokens]

    def raw_features(self, ctx, indices):
        """What the classic baseline starts from, for the assessment's k-NN: standardised MFCC statistics."""
        from sklearn.preprocessing import StandardScaler
        from headstart.audio import mfcc_stats
        return StandardScaler().fit_transform([mfcc_stats(ctx.tokens[i]) for i in indices])

    def classic_pipeline(self, C: float, seed: int):
        """MFCC (40) mean + std per clip, standardised, logistic regression."""
        return _standardised_logreg(C, seed)


def _standardised_logreg(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))


MODALITIES = {"image": ImageModality, "text": TextModality, "audio": AudioModality}


def detect_modality(data: str, explicit: str = "") -> str:
    if explicit:
        if explicit not in MODALITIES:
            raise UserError(f"unknown modality {explicit!r}; choose from {', '.join(MODALITIES)}")
        return explicit
    from headstart.text import TEXT_EXTS
    p = Path(data)
    if p.is_file():
        if p.suffix.lower() in TEXT_EXTS:
            return "text"
        raise UserError(f"{data} is a file of a type headstart does not read ({p.suffix or 'no extension'}); pass "
                        "a .csv/.tsv/.jsonl file or a folder")
    if p.is_dir():
        from headstart.audio import AUDIO_EXTS
        files = [f for f in p.rglob("*") if f.is_file()][:2000]
        n_txt = sum(f.suffix.lower() == ".txt" for f in files)
        n_audio = sum(f.suffix.lower() in AUDIO_EXTS for f in files)
        if n_txt and n_txt >= len(files) / 2:
            return "text"
        if n_audio and n_audio >= len(files) / 2:
            return "audio"
    return "image"
