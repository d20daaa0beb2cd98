"""Formatting shared by the report sections (Markdown tables, percentages, intervals, money). No torch."""
from __future__ import annotations


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def ci(interval) -> str:
    return f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def money(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def cell(value) -> str:
    """A Markdown table cell: a label like '<b>x</b>' or 'a|b' is shown as text, never as HTML or a column break."""
    return str(value).replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
