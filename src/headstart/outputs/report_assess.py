"""`headstart assess` output: the backbone ranking as Markdown (assessment.md). No torch."""
from __future__ import annotations

from headstart.outputs.common import table

SCORE_HEADER = ["backbone", "LogME", "H-score", "LEEP", "NCE", "k-NN (frozen)", "k-NN (raw input)", "verdict",
                "GFLOPs / item", "latency ms", "seconds"]


def score_rows(ranking: list[dict]) -> list[list[str]]:
    fmt = lambda v, p=3: "—" if v is None else f"{v:.{p}f}"  # noqa: E731
    return [[r["backbone"], fmt(r["scores"]["logme"]), fmt(r["scores"]["hscore"], 2), fmt(r["scores"].get("leep")),
             fmt(r["scores"].get("nce")), f"{100 * r['scores']['knn']:.1f}%", f"{100 * r['scores']['knn_raw']:.1f}%",
             r["verdict"]["label"], gflops(r.get("cost", {}).get("flops_per_item")),
             fmt(r.get("cost", {}).get("latency_ms"), 1), f"{r['seconds']:.1f}"] for r in ranking]


def gflops(x) -> str:
    return "—" if not x else f"{x / 1e9:.2f}"


def render_assessment(result: dict) -> str:
    best = result["ranking"][0]
    v = best["verdict"]
    lines = [f"# Assessment of {result['data']}", "",
             f"**{best['backbone']}: {v['label']}.** Try `{v['try_first']}` first: {v['why']}.", "",
             table(SCORE_HEADER, score_rows(result["ranking"])), "",
             "Ranked by LogME. The scores rank backbones for this task; they do not promise an accuracy. "
             "k-NN accuracies are 5-fold cross-validated on the train+val items (the test split is not used). "
             "Latency: one item through the network on this machine (best of 20, after 5 warm-up passes).", "",
             "Evidence:", *[f"- {e}" for e in v["evidence"]]]
    for s in result.get("skipped", []):
        lines.append(f"- {s['backbone']} not assessed: {s['reason']}")
    return "\n".join(lines) + "\n"
