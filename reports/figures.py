"""Server-side figures (matplotlib, Agg) as SVG text, from a computed report.

Text stays text in the SVG (``svg.fonttype = none``): figures are small, searchable, and a
condition label in a figure is checked by the same blinding tests as the tables.
"""

from __future__ import annotations

import base64
import io
import itertools
import re
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend

__all__ = ["answer_vs_step_svg", "error_rate_svg", "likert_svg", "svg_data_uri"]

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
_counter = itertools.count()


def _style() -> dict[str, Any]:
    return {
        "svg.fonttype": "none",
        "svg.hashsalt": f"fig{next(_counter)}",  # unique ids when several SVGs share a page
        "font.family": "DejaVu Sans",
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#e4e7ec",
        "grid.linewidth": 0.8,
        "axes.axisbelow": True,
    }


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    # Inline SVG: drop the XML prolog and DOCTYPE; keep it scalable to its container.
    text = text[text.index("<svg") :]
    text = re.sub(r'(<svg[^>]*?) width="[^"]*" height="[^"]*"', r"\1", text, count=1)
    text = text.replace("<svg ", '<svg role="img" preserveAspectRatio="xMidYMid meet" ', 1)
    return _presentation_attributes(text)


_STYLE_ATTR = re.compile(r'\sstyle="([^"]*)"')
_STYLE_ELEMENT = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_FONT = re.compile(r"^(?P<pre>.*?)\s*(?P<size>[\d.]+(?:px|pt|em|%))(?:/\S+)?\s+(?P<family>.+)$")


def _declarations(css: str) -> list[tuple[str, str]]:
    pairs = []
    for part in css.split(";"):
        name, sep, value = part.partition(":")
        if sep and name.strip():
            name, value = name.strip(), value.strip()
            if name == "font":
                match = _FONT.match(value)
                if match is None:
                    raise ValueError(f"cannot expand the SVG font shorthand {value!r}")
                for word in match["pre"].split():
                    key = "font-style" if word in ("italic", "oblique") else "font-weight"
                    if word != "normal":
                        pairs.append((key, word))
                pairs += [("font-size", match["size"]), ("font-family", match["family"])]
            else:
                pairs.append((name, value))
    return pairs


def _presentation_attributes(svg: str) -> str:
    """matplotlib styles its SVG with style="..." attributes and a <style> element; both are
    inline style, which the pages' Content-Security-Policy refuses (and the figure would lose
    its colours). SVG takes the same properties as presentation attributes, which CSP does not
    govern: rewrite each declaration as one (a style attribute outranks a presentation
    attribute, so its value replaces an existing attribute of the same name)."""
    rules = _STYLE_ELEMENT.search(svg)
    svg = _STYLE_ELEMENT.sub("", svg)
    if rules:
        # matplotlib's only rule is "*{stroke-linejoin: round; stroke-linecap: butt}":
        # presentation attributes inherit, so on the root they reach every element.
        root = "".join(f' {k}="{v}"' for k, v in _declarations(rules.group(1).strip("*{} \n")))
        svg = svg.replace("<svg ", "<svg" + root + " ", 1)

    def element(match: re.Match) -> str:
        tag = match.group(0)
        css = _STYLE_ATTR.search(tag)
        if css is None:
            return tag
        tag = tag[: css.start()] + tag[css.end() :]
        for name, value in _declarations(css.group(1)):
            tag = re.sub(rf'\s{re.escape(name)}="[^"]*"', "", tag)
            value = value.replace('"', "'")
            end = len(tag) - (2 if tag.endswith("/>") else 1)
            tag = f'{tag[:end].rstrip()} {name}="{value}"{tag[end:]}'
        return tag

    return re.sub(r"<[a-zA-Z][^<>]*\sstyle=\"[^\"]*\"[^<>]*>", element, svg)


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _conditions(rows: list[dict]) -> list[str]:
    return sorted({r["condition"] for r in rows})


def error_rate_svg(report: dict[str, Any], *, title: str | None = None) -> str | None:
    """Conditions × evaluators: error rate with the cluster-bootstrap interval (thick) and the
    naive Wilson interval (thin, grey) beside it. None when there are no error rates."""
    rows = report.get("error_rates") or []
    if not rows:
        return None
    conditions = _conditions(rows)
    evaluators = list(dict.fromkeys(r["evaluator"] for r in rows))
    width = 0.8 / max(len(evaluators), 1)
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(conditions) + 3), 3.8))
        for j, evaluator in enumerate(evaluators):
            color = PALETTE[j % len(PALETTE)]
            offset = -0.4 + width * (j + 0.5)
            for i, condition in enumerate(conditions):
                row = next(
                    (
                        r
                        for r in rows
                        if r["evaluator"] == evaluator and r["condition"] == condition
                    ),
                    None,
                )
                if row is None or row["error_rate"] is None:
                    continue
                x = i + offset
                rate = row["error_rate"]
                if row.get("ci_low") is not None and row.get("ci_high") is not None:
                    ax.vlines(x, row["ci_low"], row["ci_high"], color=color, linewidth=3)
                if row.get("wilson_low") is not None and row.get("wilson_high") is not None:
                    ax.vlines(
                        x + width * 0.28,
                        row["wilson_low"],
                        row["wilson_high"],
                        color="#8a929e",
                        linewidth=1.2,
                    )
                ax.plot(
                    [x],
                    [rate],
                    marker="D" if row.get("pooled") else "o",
                    color=color,
                    markersize=7,
                    label=evaluator if i == 0 or not ax.get_legend_handles_labels()[1] else None,
                    zorder=3,
                )
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.plot([], [], color="#8a929e", linewidth=1.2, label="Wilson (naive)")
        ax.legend(
            [*unique.values(), ax.lines[-1]],
            [*unique.keys(), "Wilson (naive)"],
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            title="evaluator",
        )
        ax.set_xticks(range(len(conditions)), conditions)
        ax.set_xlim(-0.6, len(conditions) - 0.4)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("step error rate")
        ax.set_title(title or "Step error rate by condition", loc="left", fontweight="bold")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        return _svg(fig)


def answer_vs_step_svg(report: dict[str, Any]) -> str | None:
    """Per condition, answer metrics (accuracy, sc@k, ECE) beside each evaluator kind's step
    error rate: the two can move in opposite directions."""
    answers = report.get("answer_metrics") or []
    rates = report.get("error_rates") or []
    if not answers or not rates:
        return None
    conditions = sorted({a["condition"] for a in answers} | {r["condition"] for r in rates})
    # One series per evaluator kind: its pooled row if it has one, else its only evaluator.
    series: dict[str, dict[str, float]] = {}
    for kind in dict.fromkeys(r["evaluator_kind"] for r in rates):
        kind_rows = [r for r in rates if r["evaluator_kind"] == kind]
        pooled = [r for r in kind_rows if r.get("pooled")]
        chosen = pooled or [r for r in kind_rows if r["evaluator"] == kind_rows[0]["evaluator"]]
        series[f"step error ({chosen[0]['evaluator']})"] = {
            r["condition"]: r["error_rate"] for r in chosen
        }
    panels = [
        ("Answer accuracy", {a["condition"]: a["accuracy"] for a in answers}),
        ("ECE", {a["condition"]: a["ece"] for a in answers}),
        *series.items(),
    ]
    with plt.rc_context(_style()):
        fig, axes = plt.subplots(
            1, len(panels), figsize=(2.5 * len(panels) + 1, 3.0), sharey=False, squeeze=False
        )
        for k, (ax, (name, values)) in enumerate(zip(axes[0], panels, strict=True)):
            heights = [values.get(c) for c in conditions]
            ax.bar(
                range(len(conditions)),
                [h if h is not None else 0 for h in heights],
                color=PALETTE[k % len(PALETTE)],
                width=0.6,
            )
            for i, h in enumerate(heights):
                ax.text(
                    i,
                    (h or 0),
                    "–" if h is None else f"{h:.2f}",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
            ax.set_xticks(range(len(conditions)), conditions, rotation=0)
            ax.set_title(name, fontsize=10, loc="left")
            ax.set_ylim(0, max([h for h in heights if h is not None] + [0.05]) * 1.25)
        fig.tight_layout()
        return _svg(fig)


def likert_svg(report: dict[str, Any]) -> str | None:
    """One panel per Likert item: each trace type's mean rating with its interval, and the
    item's Kruskal–Wallis result in the panel title. None without ratings."""
    likert = report.get("likert") or {}
    rows = [r for r in likert.get("rows") or [] if r.get("mean") is not None]
    if not rows:
        return None
    items = list(dict.fromkeys(r["item"] for r in rows))
    types = sorted({r["trace_type"] for r in rows})
    tests = {i["item"]: i.get("kruskal_wallis") or {} for i in likert.get("items") or []}
    with plt.rc_context(_style()):
        fig, axes = plt.subplots(
            1,
            len(items),
            figsize=(max(3.2 * len(items), 4.5), 0.9 + 0.45 * len(types) + 1.2),
            squeeze=False,
        )
        for ax, item in zip(axes[0], items, strict=True):
            for y, trace_type in enumerate(types):
                row = next(
                    (r for r in rows if r["item"] == item and r["trace_type"] == trace_type), None
                )
                if row is None:
                    continue
                color = PALETTE[y % len(PALETTE)]
                if row.get("ci_low") is not None and row.get("ci_high") is not None:
                    ax.hlines(y, row["ci_low"], row["ci_high"], color=color, linewidth=3)
                ax.plot([row["mean"]], [y], marker="o", color=color, markersize=7, zorder=3)
                ax.annotate(
                    f"{row['mean']:.2f}",
                    (row["mean"], y),
                    xytext=(0, 7),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
            ax.set_yticks(range(len(types)), types)
            ax.set_ylim(-0.6, len(types) - 0.4)
            ax.invert_yaxis()
            values = [
                v
                for r in rows
                if r["item"] == item
                for v in (r.get("ci_low"), r.get("ci_high"), r["mean"])
                if v is not None
            ]
            low, high = min(values), max(values)
            ax.set_xlim(min(1.0, low - 0.3), max(5.0, high + 0.3))
            ax.set_xlabel("mean rating")
            kw = tests.get(item) or {}
            title = item.replace("_", " ")
            if kw.get("H") is not None:
                p = kw.get("p")
                p_text = "< 0.001" if p is not None and p < 0.001 else f"= {p:.3f}"
                title += f"\nKruskal–Wallis H = {kw['H']:.2f}, p {p_text}"
            ax.set_title(title, loc="left", fontsize=10)
        fig.tight_layout()
        return _svg(fig)
