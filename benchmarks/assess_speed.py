"""Assessment cost vs the linear probe's feature extraction, and the backbone ranking, on ../shared/data.

    python benchmarks/assess_speed.py [hymenoptera trec fsdd]   # default: all three; cold caches

For each dataset: the linear probe's frozen feature pass alone, then the full assessment (same pass with the
BatchNorm hooks, plus LogME, H-score, LEEP/NCE, both k-NN runs), each on a cold cache, and the ratio.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA  # noqa: E402


def main():
    from headstart.pipeline import frozen
    from headstart.pipeline.assess import assess
    from headstart.core.config import RunConfig
    from headstart.pipeline.context import build_context as prepare
    from trec import to_csv
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        sets = []
        if (DATA / "hymenoptera").exists():
            sets += [("hymenoptera", dict(data=str(DATA / "hymenoptera")), b)
                     for b in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")]
        if (DATA / "trec").exists():
            to_csv(DATA / "trec" / "train_5500.label", tmp / "train.csv")
            to_csv(DATA / "trec" / "TREC_10.label", tmp / "test.csv")
            sets.append(("trec", dict(data=str(tmp / "train.csv"), test_file=str(tmp / "test.csv")), "minilm_l6"))
        if (DATA / "fsdd" / "recordings").exists():
            d = tmp / "fsdd"
            for f in sorted((DATA / "fsdd" / "recordings").glob("*.wav")):
                (d / f.name[0]).mkdir(parents=True, exist_ok=True)
                (d / f.name[0] / f.name).symlink_to(f.resolve())
            sets.append(("fsdd", dict(data=str(d)), "whisper_tiny_en"))
        print("| data | backbone | items | LP feature pass (s) | assess (s) | ratio | LogME | k-NN frozen | verdict |")
        print("|---|---|---|---|---|---|---|---|---|")
        only = set(sys.argv[1:])
        for name, kw, backbone in sets:
            if only and name not in only:
                continue
            runs = {}
            for what in ("features", "assess"):
                cfg = RunConfig(out=str(tmp / f"{name}-{backbone}-{what}"), backbone=backbone,
                                cache_dir=str(tmp / f"cache-{name}-{backbone}-{what}"), **kw)
                ctx = prepare(cfg, log=lambda *a: None)
                t0 = time.perf_counter()
                runs[what] = frozen.features(ctx) if what == "features" else assess(ctx)
                runs[what + "_s"] = time.perf_counter() - t0
            a = runs["assess"]
            print(f"| {name} | {backbone} | {len(ctx.ds)} | {runs['features_s']:.1f} | {runs['assess_s']:.1f} | "
                  f"{runs['assess_s'] / runs['features_s']:.2f} | {a['scores']['logme']:.3f} | "
                  f"{100 * a['scores']['knn']:.1f}% | {a['verdict']['label']} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()
