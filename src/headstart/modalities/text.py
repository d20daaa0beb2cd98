"""Text: tokenization and its evidence, token batches, the TF-IDF baseline, and prediction from tables, files or
literal strings; reading the tables and folders is modalities/text_files.py.

    ds = load_text("questions.csv")                      # CSV/TSV/JSONL (columns auto-detected) or folder of .txt
    ids, stats = tokenize(folder, ds.items, max_length)  # token ids + tokenizer fit (unknown / split / truncated)
    TextModality()                                       # the Modality (modalities/base.py) for text

The encoder (models/bert.py) exposes timm's contract, so strategies, the training loop and block groups
(embeddings, layer 0..L-1, head) work unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from headstart.core.dataset import LabeledSet
from headstart.core.errors import UserError, first_line
from headstart.models.device import to_device, to_numpy
from headstart.models.hub import hub_unreachable, offline_mode
from headstart.modalities.base import IndexedItems, ModalityBase, ModalityState, add_unlabelled, top_k
from headstart.modalities.text_files import TEXT_EXTS, digest, load_text, read_texts


class TokenBatches(IndexedItems):
    """Texts -> token ids (truncated to max_length); `collate` pads a batch dynamically."""

    def __init__(self, token_ids: list[list[int]], labels, indices, pad_id: int = 0):
        super().__init__(token_ids, labels, indices)
        self.pad_id = pad_id

    @property
    def lengths(self) -> list[int]:
        """Tokens per item, in dataset order: the training loop batches similar lengths together (little padding)."""
        if isinstance(self.inputs, TokenStore):
            return self.inputs.lengths[np.asarray(self.indices, dtype=int)].tolist()
        return [len(self.inputs[j]) for j in self.indices]

    def collate(self, batch):
        n = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for k, (ids, _) in enumerate(batch):
            input_ids[k, : len(ids)] = torch.as_tensor(ids)
            mask[k, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}, torch.tensor([y for _, y in batch])


class TokenStore:
    """Token ids of many texts in one int32 array with offsets (a list of Python ints costs ~10x more: 1M short
    texts took ~1 GiB that way): store[j] is text j's ids as an array, store.lengths their lengths."""

    def __init__(self, pieces: list[np.ndarray]):
        self.lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.ids = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, j) -> np.ndarray:
        return self.ids[self.offsets[j]: self.offsets[j + 1]]

    def __iter__(self):
        return (self[j] for j in range(len(self)))


CHUNK = 20_000          # texts tokenized per call: what the tokenizer's Python lists hold at once


def tokenize(folder: str | Path, texts: list[str], max_length: int, progress=None) -> tuple[TokenStore, dict]:
    """Token ids per text (TokenStore) and tokenizer statistics (unknown-token and truncation rates), in chunks of
    CHUNK texts; progress(n, total) as they are done."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()    # texts longer than the model are measured, then truncated below: expected
    try:
        with offline_mode(not Path(folder).exists() and hub_unreachable()):
            tok = AutoTokenizer.from_pretrained(str(folder))
    except OSError as e:
        raise UserError(f"could not load the tokenizer of {folder} ({first_line(e, 120)}); "
                        "offline, use minilm_l6") from None
    pieces, truncated, unk = [], 0, 0
    for start in range(0, len(texts), CHUNK):
        enc = tok(texts[start: start + CHUNK], truncation=False, add_special_tokens=True)["input_ids"]
        truncated += sum(len(e) > max_length for e in enc)
        for e in enc:
            ids = np.asarray(e[: max_length - 1] + [e[-1]] if len(e) > max_length else e, dtype=np.int32)
            unk += int((ids == tok.unk_token_id).sum()) if tok.unk_token_id is not None else 0
            pieces.append(ids)
        if progress:
            progress(len(enc), len(texts))
    store = TokenStore(pieces)
    n_tok = int(store.lengths.sum())
    stats = {"truncated_share": truncated / max(1, len(texts)), "unknown_token_rate": unk / max(1, n_tok),
             "mean_tokens": n_tok / max(1, len(texts)), "pad_id": tok.pad_token_id or 0, **_fragmentation(tok, texts)}
    return store, stats


def _fragmentation(tok, texts: list[str]) -> dict:
    """Subword pieces per whitespace word and the share of word occurrences split into several pieces."""
    from collections import Counter
    counts = Counter(w for t in texts for w in t.split())
    if not counts:
        return {"pieces_per_word": 0.0, "split_word_share": 0.0}
    words = list(counts)
    pieces = np.array([len(e) for e in tok(words, add_special_tokens=False)["input_ids"]])
    weight = np.array([counts[w] for w in words])
    return {"pieces_per_word": float((pieces * weight).sum() / weight.sum()),
            "split_word_share": float(weight[pieces > 1].sum() / weight.sum())}


@torch.inference_mode()
def embed_texts(model, token_ids: list[list[int]], batch_size: int = 128, progress=None) -> np.ndarray:
    """Mean-pooled features, batches ordered by length so padding costs little."""
    model.eval()
    lengths = token_ids.lengths if isinstance(token_ids, TokenStore) else [len(t) for t in token_ids]
    order = np.argsort(lengths)
    ds = TokenBatches(token_ids, [0] * len(token_ids), order)
    out = np.zeros((len(token_ids), model.num_features), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        x, _ = ds.collate([ds[i] for i in range(start, start + len(idx))])
        out[idx] = to_numpy(model.forward_features(to_device(x, model)))
        if progress:
            progress(len(idx))
    return out


def text_shift(stats: dict) -> dict:
    """Tokenizer evidence (computed when the texts are tokenized): how much the vocabulary fits the texts."""
    keys = ("pieces_per_word", "split_word_share", "unknown_token_rate", "truncated_share", "mean_tokens")
    return {k: stats[k] for k in keys if k in stats}


class TextModality(ModalityBase):
    name = "text"
    default_backbone = "minilm_l6"
    folder_exts = {".txt"}
    file_exts = TEXT_EXTS
    cpu_bf16_training = True    # MiniLM-size encoder, training step on an AMX CPU in bf16: 1.15-1.3x with
                                # variable-length batches (1.6x at one fixed length; benchmarks/README.md)
    # fused AdamW: MiniLM-L6's update 74 -> 10 ms of a ~0.45 s step (benchmarks/README.md "Text runs"). Not for
    # images: Lite0's fine-tune epoch gained 12% but the chaotic ants/bees scratch baseline moved (58.2% -> 44.4%)
    fused_adamw = True
    unit_gib = 3.0
    batchnorm_shift = False
    min_near_dup_size = 0
    near_dup_kind = "similar"   # embedding neighbours are paraphrases or one subject: reported, never conflicts
    # small encoders fine-tune best whole: all layers and embeddings at once (from the probe's head: LP-FT),
    # layer-wise LR decay 0.8 (the usual range for BERT-family models), 4 epochs max (3 is the standard recipe;
    # early stopping watches the rest). Gradual unfreezing reached only 4 of 7 groups in 4 epochs: 0.940 on TREC.
    # scratch: a randomly initialised 22M-parameter transformer diverged to one class at 3e-3 (TREC 13%)
    # round_items: from 5,000 training texts on, the budget counts rounds of 2,500 texts, not passes (a MiniLM
    # step is compute-bound: 4 + 8 passes over 6,000 texts took ~18 minutes; benchmarks/README.md); TREC's 4,361
    # training questions still train in passes
    defaults = {"epochs": 4, "lr_body": 8e-5, "lr_decay": 0.8, "unfreeze_groups": 99, "unfreeze_every": -1,
                "scratch_lr": 1e-4, "round_items": 2500}

    def load(self, cfg, spec, size):
        return load_text(cfg.data, cfg.text_col, cfg.label_col, cfg.encoding, cfg.test_file, cfg.group_col)

    def prepare(self, ds, spec, size, cfg, progress=None) -> ModalityState:
        ids, stats = tokenize(spec.path, ds.items, size, progress)
        return ModalityState(ids, stats)

    def dataset(self, data, indices, train: bool = False):
        return TokenBatches(data.state.inputs, data.ds.labels, indices, data.state.stats.get("pad_id", 0))



    def embed(self, data, model, progress=None):
        return embed_texts(model, data.state.inputs, progress=progress)



    def classic_inputs(self, data, indices=None):
        return data.ds.items if indices is None else [data.ds.items[i] for i in indices]

    def raw_features(self, data, indices):
        """What the classic baseline starts from, for the assessment's k-NN: TF-IDF word 1-2-grams of the texts (the
        character n-grams of the classic arm cost more than the feature pass itself; no labels used)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform([data.ds.items[i] for i in indices])

    def classic_pipeline(self, C: float, seed: int):
        """TF-IDF word 1-2-grams + character 2-5-grams, logistic regression: the baseline practitioners use."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union
        feats = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                           TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2))
        return make_pipeline(feats, LogisticRegression(C=C, max_iter=3000, random_state=seed))

    def shift_evidence(self, data, indices) -> dict:
        return {"tokenizer": text_shift(data.state.stats)}

    def evidence_lines(self, shift: dict) -> list[str]:
        tok = shift.get("tokenizer", {})
        if not tok:
            return []
        return [f"tokenizer: {tok.get('pieces_per_word', 0):.2f} pieces per word, "
                f"{100 * tok.get('unknown_token_rate', 0):.2f}% unknown tokens, "
                f"{100 * tok.get('truncated_share', 0):.1f}% of texts truncated"]

    def finetune_advice(self, early_shift: bool) -> str:
        return "all layers with layer-wise LR decay; the frozen features alone leave accuracy on the table"

    def hidden_gain(self):
        """(evidence, advice) when frozen features tie the raw-input baseline: for text encoders the gain comes
        from fine-tuning, which frozen features do not show."""
        return ("frozen text features tie TF-IDF here, but frozen features do not show what fine-tuning adds: on "
                "TREC fine-tuning beat TF-IDF by 7-16 points where frozen features tied",
                "all layers with layer-wise LR decay: for text encoders the gain comes from fine-tuning")

    def input_description(self, size: int) -> str:
        return f"at most {size} tokens per text"

    def read_unlabelled(self, inputs: list[str], spec, size: int) -> LabeledSet:
        """Texts without labels (for `headstart suggest`): tables, .txt files or folders of them; empty texts are
        listed, not kept."""
        ds = LabeledSet(root=Path("."), classes=[])
        files = [str(f) for s in inputs for f in (sorted(Path(s).rglob("*.txt")) if Path(s).is_dir() else [s])]
        for t, where in zip(*read_texts(files)):
            t = t.strip()
            if t:
                add_unlabelled(ds, where, t, digest(t))
            else:
                ds.skipped.append({"path": where, "reason": "empty text"})
        return ds

    def predict(self, model_dir, model, spec, classes, inputs, top, batch_size, runtime, options=None) -> list[dict]:
        """Inputs: CSV/TSV/JSONL tables (their text column), .txt files (one text each), or literal strings."""
        texts, where = read_texts(inputs, **(options or {}))
        ids, stats = tokenize(spec.path, texts, spec.input_size)
        ds = TokenBatches(ids, [0] * len(ids), range(len(ids)), stats["pad_id"])
        rows = []
        with torch.inference_mode():
            for start in range(0, len(ids), 64):
                x, _ = ds.collate([ds[i] for i in range(start, min(len(ids), start + 64))])
                for k, p in enumerate(model(x).softmax(1)):
                    rows.append({"path": where[start + k], "text": texts[start + k][:200], **top_k(p, classes, top)})
        return rows
