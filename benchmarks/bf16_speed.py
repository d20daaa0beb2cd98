"""Where does bf16 mixed precision speed up a training step on this CPU? The evidence behind --precision auto.

    python benchmarks/bf16_speed.py [--steps 8]       # ~4 minutes on 2 cores

One training step (forward, backward, AdamW) per network, float32 vs bf16 autocast, alternating, with the batch
shapes headstart really feeds: Lite0 at 224 px (batch 32), a MiniLM-size BERT on variable-length token batches
(batch 32, 8-30 tokens) and at one fixed length, the Whisper tiny encoder on clip-length mel batches (0.4-1.2 s
clips, batch 32) and on Whisper's 30 s input (batch 8). Random weights and inputs: speed only.
"""
from __future__ import annotations

import random
import sys
import time

import numpy as np
import torch


def step_seconds(model, make_input, bf16: bool, steps: int) -> float:
    """Median seconds of one training step, after two warm-up steps."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    ts = []
    for i in range(steps + 2):
        x = make_input(i)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(**x) if isinstance(x, dict) and "input_ids" in x else model(x)
            out = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
            loss = out.float().logsumexp(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts[2:]))


def cases():
    import timm
    from transformers import BertConfig, BertModel

    from headstart.modalities.audio import MelBatches
    from headstart.models.factory import create_backbone
    rng = random.Random(0)
    img = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    yield "Lite0, 224 px, batch 32", lambda: timm.create_model("efficientnet_lite0", num_classes=2), lambda i: img
    bert = lambda: BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,  # noqa: E731
                                        intermediate_size=1536))
    lens = [rng.randint(8, 30) for _ in range(64)]
    yield ("MiniLM-size encoder, 8-30 tokens", bert,
           lambda i: {"input_ids": torch.randint(0, 30000, (32, lens[i])),
                      "attention_mask": torch.ones(32, lens[i], dtype=torch.long)})
    yield "MiniLM-size encoder, 24 tokens", bert, lambda i: {"input_ids": torch.randint(0, 30000, (32, 24))}
    mels = [np.random.randn(80, rng.randint(40, 120)).astype(np.float32) for _ in range(32 * 64)]
    ds = MelBatches(mels, [0] * len(mels), range(len(mels)), False)
    whisper = lambda: create_backbone("whisper_tiny_en", 10, pretrained=False)[0]  # noqa: E731
    yield ("Whisper tiny encoder, clip-length", whisper,
           lambda i: ds.collate([ds[j] for j in range(32 * i, 32 * i + 32)])[0])
    padded = MelBatches(mels[:8], [0] * 8, range(8), True)
    yield ("Whisper tiny encoder, 30 s input, batch 8", whisper,
           lambda i: padded.collate([padded[j] for j in range(8)])[0], 3)     # 10 s a step: 3 steps


def main():
    steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 8
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    print(f"{'network, input':<44}{'fp32 s/step':>12}{'bf16 s/step':>12}{'bf16 speed-up':>14}")
    for name, make_model, make_input, *cap in cases():
        t = {}
        for bf16 in (False, True, False, True):             # alternating: drift on the VM hits both
            torch.manual_seed(0)
            t.setdefault(bf16, []).append(step_seconds(make_model(), make_input, bf16, min([steps, *cap])))
        f32, b16 = min(t[False]), min(t[True])
        print(f"{name:<44}{f32:>12.3f}{b16:>12.3f}{f32 / b16:>13.2f}x", flush=True)


if __name__ == "__main__":
    main()
