"""`headstart assess` output: the backbone ranking as Markdown (assessment.md). No torch."""
from __future__ import annotations

from headstart.core.comparison import AssessReport
from headstart.core.findings import Assessment, BackboneCost
from headstart.outputs.common import table

SCORE_HEADER = ["backbone", "LogME", "H-score", "LEEP", "NCE", "k-NN (frozen)", "k-NN (raw input)", "verdict",
                "GFLOPs / item", "latency ms", "seconds"]


def score_rows(ranking: list[Assessment]) -> list[list[str]]:
    fmt = lambda v, p=3: "—" if v is None else f"{v:.{p}f}"  # noqa: E731
    rows = []
    for r in map(Assessment.of, ranking):
        sc, cost = r.scores, r.cost or BackboneCost()
        rows.append([r.backbone, fmt(sc.logme), fmt(sc.hscore, 2), fmt(sc.leep), fmt(sc.nce), f"{100 * sc.knn:.1f}%",
                     f"{100 * sc.knn_raw:.1f}%", r.verdict.label, gflops(cost.flops_per_item),
                     fmt(cost.latency_ms, 1), f"{r.seconds:.1f}"])
    return rows


def gflops(x) -> str:
    return "—" if not x else f"{x / 1e9:.2f}"


def render_assessment(result: AssessReport) -> str:
    best = result.ranking[0]
    v = best.verdict
    lines = [f"# Assessment of {result.data}", "",
             f"**{best.backbone}: {v.label}.** Try `{v.try_first}` first: {v.why}.", "",
             table(SCORE_HEADER, score_rows(result.ranking)), "",
             "Ranked by LogME. The scores rank backbones for this task; they do not promise an accuracy. "
             "k-NN accuracies are 5-fold cross-validated on the train+val items (the test split is not used). "
             "Latency: one item through the network on this machine (best of 20, after 5 warm-up passes).", "",
             "Evidence:", *[f"- {e}" for e in v.evidence]]
    lines += [f"- {s.backbone} not assessed: {s.reason}" for s in result.skipped]
    return "\n".join(lines) + "\n"
