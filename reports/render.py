"""Turn a computed report into what templates show: formatted tables, figures, headlines.

The page and the stand-alone HTML report share one body template
(``reports/_report_body.html``); the page embeds figures as inline SVG, the stand-alone file
as data URIs (so it is one file for a paper's supplement).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.cache import cache
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from auditapp.agreement.report import level_text
from reports.exports import hedging_by_condition, report_tables, sequential_rows, step_series
from reports.figures import (
    answer_vs_step_svg,
    error_rate_svg,
    likert_svg,
    svg_data_uri,
)

__all__ = ["DisplayTable", "report_context", "report_html", "report_page_parts"]

# Bump when the body template or the figures change, so cached bodies of the old look go.
PAGE_BODY_VERSION = 1

CSS_PATH = Path(__file__).parent / "static" / "reports" / "report.css"
METHOD_NAMES = {
    "ece": "ECE",
    "ece_bins": "ECE bins",
    "ppi": "PPI",
    "sc_at_k": "sc@k",
    "self_consistency": "self-consistency",
}


@dataclass
class DisplayTable:
    name: str  # the table's export name (report_tables) — also its download name
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    numeric_from: int = 1  # columns from here on are numbers (right-aligned)


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _sample_indices(indices: list[int] | None) -> str:
    """Which sample indices the audited traces are: "0", "0, 3", or "0, 1, 2 … (40)"."""
    if not indices:
        return "–"
    shown = ", ".join(str(i) for i in indices[:3])
    return shown if len(indices) <= 3 else f"{shown} … ({len(indices)})"


def _pct(value: Any) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}%"


def _prediction(share: Any) -> str:
    """What a PPI row used as the judge's prediction (its stated probability or verdict)."""
    if not share:
        return "verdict"
    if share >= 1:
        return "probability"
    return f"probability ({100 * share:.0f}% of steps)"


def _interval(low: Any, high: Any, *, pct: bool = True) -> str:
    if low is None or high is None:
        return "–"
    fmt = _pct if pct else _num
    return f"{fmt(low)} – {fmt(high)}"


def _p(value: Any) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


_GATE_MISSING = {
    False: "not assigned yet",
    True: "not recorded (assigned before the gate was kept per batch)",
}


def _table(name, title, columns, rows, note="", numeric_from=1) -> DisplayTable:
    return DisplayTable(
        name=name,
        title=title,
        columns=columns,
        rows=rows,
        note=note,
        numeric_from=numeric_from,
    )


def _error_rate_table(report: dict) -> DisplayTable:
    rows = [
        [
            r["evaluator"] + (" (pooled)" if r.get("pooled") else ""),
            r["evaluator_kind"],
            r["condition"],
            _num(r["n"]),
            _num(r["n_abstain"]),
            _num(r["n_error"]),
            _pct(r["error_rate"]),
            _interval(r["ci_low"], r["ci_high"]),
            _method_short(r.get("interval_method")),
            _interval(r["wilson_low"], r["wilson_high"]),
            _pct(r.get("abstain_rate")),
            _pct(r.get("error_rate_abstain_as_error")),
            _pct(r.get("error_rate_abstain_as_correct")),
        ]
        for r in report.get("error_rates") or []
    ]
    return _table(
        "error_rates",
        "Error rates",
        [
            "evaluator",
            "kind",
            "condition",
            "steps",
            "abstain",
            "errors",
            "error rate",
            "CI",
            "CI method",
            "Wilson CI (naive)",
            "abstain rate",
            "abstain → error",
            "abstain → correct",
        ],
        rows,
        note="CI: cluster bootstrap over traces; “effective-n Wilson” when the condition has "
        "few traces or the bootstrap degenerates (the small-sample rule in Methods).",
        numeric_from=3,
    )


def _method_short(method: Any) -> str:
    if not method:
        return "–"
    if method.startswith("cluster bootstrap"):
        return "bootstrap"
    if method.startswith("Newcombe"):
        return "Newcombe"
    if method.startswith("Wilson"):
        return "effective-n Wilson"
    if method.startswith("normal, widened"):
        return "widened (few labels)"
    return "normal" if method == "normal" else method


def _rate_with_interval(row: dict | None) -> str:
    if not row or row.get("error_rate") is None:
        return "–"
    return f"{_pct(row['error_rate'])} ({_interval(row.get('ci_low'), row.get('ci_high'))})"


def _share_with_interval(row: dict | None, key: str) -> str:
    if not row or row.get(key) is None:
        return "–"
    return f"{_pct(row[key])} ({_interval(row.get('ci_low'), row.get('ci_high'))})"


def _ordering_text(ordering: dict) -> str:
    rates = ordering["rates"]
    return " < ".join(f"{c} ({_pct(rates.get(c))})" for c in ordering["ranking"])


def ordering_headlines(report: dict) -> list[dict[str, Any]]:
    """ "Does the expert reproduce the judge?" — one answer per (expert, judge) pair, or per
    evaluator pair when there are no experts or no judges."""
    orderings = {o["evaluator"]: o for o in report.get("orderings") or []}
    kinds = {o["evaluator"]: o["evaluator_kind"] for o in orderings.values()}
    pairs = report.get("ordering_agreement") or []
    expert_judge = [
        p for p in pairs if {kinds.get(p["a"]), kinds.get(p["b"])} == {"expert", "judge"}
    ]
    chosen = expert_judge or pairs
    headlines = []
    for p in chosen:
        a, b = p["a"], p["b"]
        if kinds.get(a) == "judge" and kinds.get(b) == "expert":
            a, b = b, a
        same = p.get("same_ordering")
        headlines.append(
            {
                "a": a,
                "b": b,
                "a_kind": kinds.get(a),
                "b_kind": kinds.get(b),
                "a_ordering": _ordering_text(orderings[a]) if a in orderings else "–",
                "b_ordering": _ordering_text(orderings[b]) if b in orderings else "–",
                "answer": "yes" if same else ("no" if same is not None else "undetermined"),
                "same_ordering": same,
                "kendall_tau": _num(p.get("kendall_tau")),
                "p_same_ordering": _num(p.get("p_same_ordering")),
                "n_resamples": p.get("n_resamples"),
                "conditions": len(p.get("conditions") or []),
            }
        )
    return headlines


CONTROL_NAMES = {
    "answer_correct": "final answer",
    "dataset": "dataset",
    "trace_type": "trace type",
    "step_position": "step position",
    "segmentation": "segmentation",
    "style_blind": "style-blind vs raw judge",
}
VERDICT_TONES = {
    "reproduces": "yes",
    "consistent_with": "maybe",
    "inconclusive": "maybe",
    "does_not_reproduce": "no",
}
VERDICT_LABELS = {
    "reproduces": "Reproduces",
    "consistent_with": "Consistent with",
    "inconclusive": "Inconclusive",
    "does_not_reproduce": "Does not reproduce",
}


def findings_display(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's findings as the page shows them: the JSON's sentence, word for word."""
    out = []
    for item in (report.get("findings") or {}).get("items") or []:
        out.append(
            {
                "verdict": item["verdict"],
                "label": VERDICT_LABELS.get(item["verdict"], item["verdict"]),
                "tone": VERDICT_TONES.get(item["verdict"], "maybe"),
                "sentence": item["sentence"],
                "rule": item.get("rule", ""),
                "table": item.get("table"),
                "a": item.get("a"),
                "b": item.get("b"),
            }
        )
    return out


def control_summary_line(report: dict[str, Any]) -> str:
    """How many control levels keep the findings' verdicts, in one sentence."""
    controls = report.get("controls") or {}
    rows = list(controls.get("summary") or []) + list(controls.get("style_blind") or [])
    if not rows:
        return ""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    parts = ", ".join(
        f"{counts[v]} {VERDICT_LABELS[v].lower()}" for v in VERDICT_LABELS if v in counts
    )
    return f"Under the controls ({len(rows)} levels and comparisons): {parts}."


def _tables(report: dict) -> dict[str, DisplayTable]:
    # Every interval the report computes is at its confidence level (the leak gate's AUC
    # interval was recorded at assignment, at 95%).
    ci = f"{level_text((report.get('parameters') or {}).get('confidence_level', 0.95))} CI"
    out: dict[str, DisplayTable] = {"error_rates": _error_rate_table(report)}
    out["ordering_agreement"] = _table(
        "ordering_agreement",
        "Ordering agreement between evaluators",
        ["a", "b", "conditions", "Kendall's τb", "same ordering", "P(same ordering)"],
        [
            [
                r["a"],
                r["b"],
                " · ".join(r.get("conditions") or []),
                _num(r["kendall_tau"]),
                _num(r["same_ordering"]),
                _num(r["p_same_ordering"]),
            ]
            for r in report.get("ordering_agreement") or []
        ],
        numeric_from=3,
    )
    out["ordering_differences"] = _table(
        "ordering_differences",
        "Pairwise differences between conditions",
        ["evaluator", "a", "b", "a − b", "CI", "CI method", "significant", "z test p", "Fisher p"],
        [
            [
                o["evaluator"],
                d["condition_a"],
                d["condition_b"],
                _pct(d["difference"]),
                _interval(d["ci_low"], d["ci_high"]),
                _method_short(d.get("method")),
                _num(d.get("significant")),
                _p(d.get("p_z")),
                _p(d.get("p_fisher")),
            ]
            for o in report.get("orderings") or []
            for d in o.get("differences") or []
        ],
        numeric_from=3,
    )
    out["pairwise_agreement"] = _table(
        "pairwise_agreement",
        "Step-level agreement, pairs of evaluators",
        ["a", "b", "abstain as", "steps", "agreement", "Cohen's κ", f"κ {ci}", "Gwet's AC1"],
        [
            [
                r["a"],
                r["b"],
                r.get("abstain", ""),
                _num(r.get("n")),
                _pct(r.get("percent_agreement")),
                _num(r.get("cohen_kappa")),
                _interval(r.get("kappa_ci_low"), r.get("kappa_ci_high"), pct=False),
                _num(r.get("gwet_ac1")),
            ]
            for r in report.get("pairwise_agreement") or []
        ],
        note="“abstain as category”: abstain is a third verdict; “missing”: only steps where "
        "both evaluators gave correct/error.",
        numeric_from=3,
    )
    out["multi_rater"] = _table(
        "multi_rater",
        "Agreement among several evaluators",
        [
            "evaluators",
            "abstain as",
            "units",
            "pairable",
            "raters",
            "agreement",
            "Fleiss' κ",
            "Krippendorff's α",
            "Gwet's AC1",
        ],
        [
            [
                r.get("evaluator_kind") or "all",
                r.get("abstain", ""),
                _num(r.get("n_units")),
                _num(r.get("n_pairable_units")),
                _num(r.get("n_raters")),
                _pct(r.get("percent_agreement")),
                _num(r.get("fleiss_kappa")),
                _num(r.get("krippendorff_alpha")),
                _num(r.get("gwet_ac1")),
            ]
            for r in report.get("multi_rater") or []
            if r.get("n_raters")
        ],
        numeric_from=2,
    )
    out["answer_metrics"] = _table(
        "answer_metrics",
        "Answer metrics",
        [
            "condition",
            "samples",
            "audited",
            "audited sample",
            "questions",
            "accuracy",
            "sc@k",
            "k",
            "ECE",
            "Brier",
        ],
        [
            [
                r["condition"],
                _num(r.get("n")),
                _num(r.get("n_audited")),
                _sample_indices(r.get("audited_sample_indices")),
                _num(r.get("n_questions")),
                _pct(r.get("accuracy")),
                _pct(r.get("sc_at_k")),
                f"{r.get('k_min')}–{r.get('k_max')}"
                if r.get("k_min") != r.get("k_max")
                else _num(r.get("k_min")),
                _num(r.get("ece")),
                _num(r.get("brier")),
            ]
            for r in report.get("answer_metrics") or []
        ],
    )
    out["answer_metrics_by_control"] = _table(
        "answer_metrics_by_control",
        "Answer metrics per control",
        ["control", "value", "condition", "samples", "accuracy", "sc@k", "ECE", "Brier"],
        [
            [
                r["control"],
                r["value"],
                r["condition"],
                _num(r.get("n")),
                _pct(r.get("accuracy")),
                _pct(r.get("sc_at_k")),
                _num(r.get("ece")),
                _num(r.get("brier")),
            ]
            for r in report.get("answer_metrics_by_control") or []
        ],
    )
    series = step_series(report)
    hedging = hedging_by_condition(report)
    if report.get("answer_metrics") or hedging:
        answers = {a["condition"]: a for a in report.get("answer_metrics") or []}
        conditions = sorted(set(answers) | {c for s in series.values() for c in s})
        out["answer_vs_step"] = _table(
            "answer_vs_step",
            "Answer metrics and hedging beside step error rates",
            ["condition", "accuracy", "sc@k", "ECE", "Brier", "hedging language"]
            + [f"step error ({evaluator})" for evaluator in series]
            + [f"abstain ({evaluator})" for evaluator in series],
            [
                [
                    condition,
                    _pct((answers.get(condition) or {}).get("accuracy")),
                    _pct((answers.get(condition) or {}).get("sc_at_k")),
                    _num((answers.get(condition) or {}).get("ece")),
                    _num((answers.get(condition) or {}).get("brier")),
                    _share_with_interval(hedging.get(condition), "rate"),
                ]
                + [
                    _rate_with_interval(by_condition.get(condition))
                    for by_condition in series.values()
                ]
                + [
                    _pct((by_condition.get(condition) or {}).get("abstain_rate"))
                    for by_condition in series.values()
                ]
                for condition in conditions
            ],
            note="Answer-level metrics and hedging can stay flat or improve while the share of "
            "wrong steps rises: read the columns side by side. Hedging language: share of "
            "steps with a term of the lexicon (Methods), evaluator-independent.",
        )
    else:
        out["answer_vs_step"] = _table("answer_vs_step", "", [], [])
    out["trace_vs_answer"] = _table(
        "trace_vs_answer",
        "Trace correct × answer correct (verifiable traces)",
        [
            "condition",
            "traces",
            "trace ✓ answer ✓",
            "trace ✓ answer ✗",
            "trace ✗ answer ✓",
            "trace ✗ answer ✗",
            "P(answer ✓ | trace ✓)",
            "P(answer ✓ | trace ✗)",
            "χ²",
            "χ² p",
            "Fisher p",
            "test used",
        ],
        [
            [
                r["condition"],
                _num(r.get("n")),
                _num(r.get("trace_correct_answer_correct")),
                _num(r.get("trace_correct_answer_wrong")),
                _num(r.get("trace_wrong_answer_correct")),
                _num(r.get("trace_wrong_answer_wrong")),
                _pct(r.get("p_answer_correct_given_trace_correct")),
                _pct(r.get("p_answer_correct_given_trace_wrong")),
                _num(r.get("chi2")),
                _p(r.get("chi2_p")),
                _p(r.get("fisher_p")),
                r.get("test") or "–",
            ]
            for r in report.get("trace_vs_answer") or []
        ],
        note="Is a correct answer independent of a correct trace? Pearson's χ² (no continuity "
        "correction); Fisher's exact test when an expected count is below 5.",
    )
    controls = report.get("controls") or {}
    summary_rows = []
    for r in controls.get("summary") or []:
        summary_rows.append(
            [
                CONTROL_NAMES.get(r["control"], r["control"]),
                r["level"],
                f"{r['b']} vs {r['a']}",
                _num(r.get("n_labels")),
                " < ".join(r.get("ranking_a") or []),
                " < ".join(r.get("ranking_b") or []),
                _num(r.get("same_as_overall_a")),
                _num(r.get("same_as_overall_b")),
                _num(r.get("p_same_ordering")),
                VERDICT_LABELS.get(r["verdict"], r["verdict"]),
            ]
        )
    for f in controls.get("style_blind") or []:
        summary_rows.append(
            [
                "style-blind vs raw judge",
                "all labels",
                f"{f['b']} (raw) vs {f['a']} (style-blind)",
                "–",
                " < ".join(f.get("ranking_a") or []),
                " < ".join(f.get("ranking_b") or []),
                "–",
                "–",
                _num(f.get("p_same_ordering")),
                VERDICT_LABELS.get(f["verdict"], f["verdict"]),
            ]
        )
    out["control_summary"] = _table(
        "control_summary",
        "Does the ordering hold under this control?",
        [
            "control",
            "level",
            "evaluators",
            "labels",
            "ordering (first)",
            "ordering (second)",
            "first keeps its overall ordering",
            "second keeps its overall ordering",
            "P(same ordering)",
            "finding",
        ],
        summary_rows,
        note="Within each level the error rates, differences and ordering agreement are "
        "computed again (cluster bootstrap, small-sample rule) and the findings rules give "
        "the verdict. The tables below hold the numbers.",
        numeric_from=3,
    )
    out["control_error_rates"] = _table(
        "control_error_rates",
        "Error rates within each level of each control",
        [
            *("control", "level", "evaluator", "condition", "steps", "errors"),
            *("error rate", "CI", "CI method"),
        ],
        [
            [
                CONTROL_NAMES.get(r["control"], r["control"]),
                r["level"],
                r["evaluator"] + (" (pooled)" if r.get("pooled") else ""),
                r["condition"],
                _num(r.get("n")),
                _num(r.get("n_error")),
                _pct(r.get("error_rate")),
                _interval(r.get("ci_low"), r.get("ci_high")),
                _method_short(r.get("interval_method")),
            ]
            for r in controls.get("error_rates") or []
        ],
        numeric_from=4,
    )
    out["control_differences"] = _table(
        "control_differences",
        "Pairwise differences within each level of each control",
        ["control", "level", "evaluator", "a", "b", "a − b", "CI", "significant"],
        [
            [
                CONTROL_NAMES.get(r["control"], r["control"]),
                r["level"],
                r["evaluator"],
                r["condition_a"],
                r["condition_b"],
                _pct(r.get("difference")),
                _interval(r.get("ci_low"), r.get("ci_high")),
                _num(r.get("significant")),
            ]
            for r in controls.get("differences") or []
        ],
        numeric_from=5,
    )
    hedging_section = report.get("hedging_language") or {}
    lexicon = hedging_section.get("lexicon") or {}
    out["hedging_language"] = _table(
        "hedging_language",
        "Hedging language per condition",
        ["condition", "steps", "traces", "hedged steps", "share", "CI", "CI method"],
        [
            [
                r["condition"],
                _num(r.get("n_steps")),
                _num(r.get("n_traces")),
                _num(r.get("n_hedged")),
                _pct(r.get("rate")),
                _interval(r.get("ci_low"), r.get("ci_high")),
                _method_short(r.get("interval_method")),
            ]
            for r in hedging_section.get("rows") or []
        ],
        note=(
            f"Lexicon {lexicon.get('version')}: {', '.join(lexicon.get('terms') or [])}"
            + (
                f"; the audit's additions: {', '.join(lexicon['extra_terms'])}"
                if lexicon.get("extra_terms")
                else ""
            )
            + ". Whole words, case-insensitive, on the blinded step text."
        )
        if lexicon
        else "",
    )
    judge = report.get("judge_by_condition") or {}
    out["judge_by_condition"] = _table(
        "judge_by_condition",
        "The judge against the experts, per condition",
        ["judge", "condition", "steps", "sensitivity", ci, "specificity", ci],
        [
            [
                r["judge"],
                r["condition"],
                _num(r.get("n")),
                _pct(r.get("sensitivity")),
                _interval(r.get("sensitivity_low"), r.get("sensitivity_high")),
                _pct(r.get("specificity")),
                _interval(r.get("specificity_low"), r.get("specificity_high")),
            ]
            for r in judge.get("rows") or []
        ],
        note=" ".join(
            f"{h['judge']}: sensitivity p = {_p(h.get('sensitivity_p'))}, specificity p = "
            f"{_p(h.get('specificity_p'))}"
            + (
                " — FLAGGED: accuracy differs by condition, the ordering may be biased."
                if h.get("flagged")
                else "."
            )
            for h in judge.get("homogeneity") or []
        ),
        numeric_from=2,
    )
    ppi = report.get("ppi") or {}
    out["ppi"] = _table(
        "ppi",
        "Prediction-powered error rates",
        [
            "judge",
            "condition",
            "judged",
            "expert-labelled",
            "PPI (λ = 1)",
            "PPI CI",
            "PPI++",
            "PPI++ CI",
            "λ",
            "effective n",
            "prediction",
            "expert only",
            "expert-only CI",
            "judge only",
        ],
        [
            [
                r["judge"],
                r["condition"],
                _num(r.get("n_judged")),
                _num(r.get("n_labelled")),
                _pct(r.get("estimate")) + (" *" if r.get("clipped") else ""),
                _interval(r.get("ci_low"), r.get("ci_high")),
                _pct(r.get("ppi_plus_plus")) + (" *" if r.get("ppi_plus_plus_clipped") else ""),
                _interval(r.get("ppi_plus_plus_ci_low"), r.get("ppi_plus_plus_ci_high")),
                _num(r.get("lambda"), 2),
                _num(r.get("n_effective"), 1),
                _prediction(r.get("prediction_probability_share")),
                _pct(r.get("expert_only")),
                _interval(r.get("expert_only_ci_low"), r.get("expert_only_ci_high")),
                _pct(r.get("judge_only")),
            ]
            for r in ppi.get("rows") or []
        ],
        note="PPI++ chooses λ in [0, 1] from the data to minimise the variance (λ = 0 is "
        "expert only, so it is never wider); effective n = expert labels expert-only would "
        "need for the same precision. Prediction: the judge's stated probability of an error "
        "(its samples' share or token probability) where it has one, else its 0/1 verdict. "
        "* = clipped to [0, 100%]. Intervals follow the small-sample rule in Methods.",
        numeric_from=2,
    )
    likert = report.get("likert") or {}
    out["likert"] = _table(
        "likert",
        "Likert ratings per trace type",
        ["trace type", "item", "ratings", "traces", "mean", "median", f"{ci} of mean"],
        [
            [
                r["trace_type"],
                r["item"],
                _num(r.get("n")),
                _num(r.get("n_traces")),
                _num(r.get("mean"), 2),
                _num(r.get("median"), 1),
                _interval(r.get("ci_low"), r.get("ci_high"), pct=False),
            ]
            for r in likert.get("rows") or []
        ],
        numeric_from=2,
    )
    out["likert_tests"] = _table(
        "likert_tests",
        "Likert tests per item",
        [
            *("item", "ratings", "raters", "Kruskal–Wallis H", "p"),
            *("Friedman χ²", "Friedman p", "complete participants", "Krippendorff's α (ordinal)"),
        ],
        [
            [
                i["item"],
                _num(i.get("n")),
                _num(i.get("n_raters")),
                _num((i.get("kruskal_wallis") or {}).get("H")),
                _p((i.get("kruskal_wallis") or {}).get("p")),
                _num((i.get("friedman") or {}).get("statistic")),
                _p((i.get("friedman") or {}).get("p")),
                _num((i.get("friedman") or {}).get("n_raters")),
                _num(i.get("krippendorff_alpha")),
            ]
            for i in likert.get("items") or []
        ],
        note="Friedman: within participants (each participant's mean per trace type). "
        "Intervals of the means resample participants and traces (two-way bootstrap).",
    )
    blinding = report.get("blinding") or {}
    out["blinding_batches"] = _table(
        "blinding_batches",
        "Leak gate per batch: can the arm be read from what its annotators were shown?",
        ["batch", "items", "AUC", "95% CI", "threshold", "above", "confirmed by", "top n-grams"],
        [
            [
                b["batch"],
                _num(b.get("n_items")),
                _num(b.get("auc")),
                _interval(b.get("ci_low"), b.get("ci_high"), pct=False),
                _num(b.get("threshold")),
                "yes" if b.get("above") else "no",
                b.get("confirmed_by") or "–",
                "; ".join(
                    f"{arm}: {', '.join(grams)}"
                    for arm, grams in (b.get("top_features") or {}).items()
                    if grams
                )
                or "–",
            ]
            if b.get("recorded")
            else [b["batch"], "–", "–", "–", "–", "–", "–", _GATE_MISSING[b.get("assigned", False)]]
            for b in blinding.get("batches") or []
        ],
        note="The blinding classifier of the check above, run when the batch was assigned on "
        "each item as its annotators see it (context window, step, final answer when shown); "
        "'above': the interval's lower bound exceeds the audit's threshold, and assigning "
        "needed a logged confirmation. No AUC: an arm had fewer than 30 items.",
    )
    index_rows = blinding.get("index") or []
    out["blinding_index"] = _table(
        "blinding_index",
        "Clinicians' guesses of the condition",
        [
            "condition",
            "answers",
            "don't know",
            "answers per option",
            "correct",
            "incorrect",
            "Bang's BI",
            ci,
            "BI if random",
        ],
        [
            [
                r["condition"],
                _num(r.get("n")),
                _num(r.get("n_dont_know")),
                ", ".join(f"{k}: {v}" for k, v in (r.get("options") or {}).items()) or "–",
                _num(r.get("n_correct")),
                _num(r.get("n_incorrect")),
                _num(r.get("bang_bi")),
                _interval(r.get("ci_low"), r.get("ci_high"), pct=False),
                _num(r.get("bi_if_random")),
            ]
            for r in index_rows
        ],
        note=(
            "Bang's BI: 0 = random guessing between two arms, 1 = everyone guessed their arm, "
            "−1 = everyone guessed another arm."
            + (
                " Answer options are shown as “option N” until the audit is unblinded: their "
                "wording names the arms."
                if blinding.get("options_hidden")
                else ""
            )
        ),
        numeric_from=1,
    )
    gaps = (report.get("robustness") or {}).get("segmentation_gaps") or []
    out["segmentation_gaps"] = _table(
        "segmentation_gaps",
        "Robustness: condition gaps under each segmentation",
        ["segmentation", "evaluator", "a", "b", "a − b", "bootstrap CI"],
        [
            [
                g["segmentation"],
                g["evaluator"],
                g["condition_a"],
                g["condition_b"],
                _pct(g.get("gap")),
                _interval(g.get("ci_low"), g.get("ci_high")),
            ]
            for g in gaps
        ],
        numeric_from=4,
    )
    out["stratified_ppi"] = _table(
        "stratified_ppi",
        "Stratified PPI (batches drawn by condition × judge verdict)",
        ["batch", "condition", "labelled", "strata", "stratified PPI", "CI", "Hájek", "Hájek CI"],
        [
            [
                b["batch"],
                r["condition"],
                _num(r.get("n_labelled")),
                _num(r.get("strata")),
                _pct(r.get("estimate")) if "estimate" in r else r.get("note", "–"),
                _interval(r.get("ci_low"), r.get("ci_high")),
                _pct(r.get("hajek_expert_only")),
                _interval(r.get("hajek_ci_low"), r.get("hajek_ci_high")),
            ]
            for b in (report.get("stratified_ppi") or {}).get("batches") or []
            for r in b["rows"]
        ],
        note=(report.get("stratified_ppi") or {}).get("rule", ""),
        numeric_from=2,
    )
    out["sequential"] = _table(
        "sequential",
        "Waves: anytime-valid confidence sequences after each wave",
        ["batch", "wave", "quantity", "labels", "estimate", "confidence sequence", "settled"],
        [
            [
                r["batch"],
                str(r["wave"]),
                r["quantity"],
                _num(r.get("labels")),
                _pct(r.get("estimate")),
                _interval(r.get("cs_low"), r.get("cs_high")),
                ("yes — the rule fired here" if r["fired_here"] else "yes")
                if r["settled"]
                else "no",
            ]
            for r in sequential_rows(report)
        ],
        note="Each arm's sequence holds at every wave at once (level α/K); a gap's sequence "
        "is the difference of its arms' sequences. Settled: neighbouring arms' sequences are "
        "disjoint."
        + "".join(
            f" Increments of {b['batch']}: {b['increments']}."
            for b in (report.get("sequential") or {}).get("batches") or []
            if b.get("increments")
        ),
        numeric_from=3,
    )
    annotators = report.get("annotators") or {}
    out["annotator_quality"] = _table(
        "annotator_quality",
        "Annotator quality",
        [
            "expert",
            "labels",
            "gold items",
            "gold accuracy",
            ci,
            "repeat pairs",
            "repeat agreement",
            "repeat κ",
            "median s/item",
            "abstained",
            "flags",
            "excluded",
        ],
        [
            [
                q["evaluator"],
                _num(q.get("n_labels")),
                _num(q.get("gold_items")),
                _pct(q.get("gold_accuracy")),
                _interval(q.get("gold_ci_low"), q.get("gold_ci_high")),
                _num(q.get("repeat_pairs")),
                _pct(q.get("repeat_agreement")),
                _num(q.get("repeat_kappa")),
                _num(q.get("median_seconds"), 1),
                _pct(q.get("abstain_share")),
                q.get("flags") or "–",
                q.get("excluded") or "–",
            ]
            for q in annotators.get("quality") or []
        ],
        note=annotators.get("rule", ""),
    )
    first_error = report.get("first_error") or {}
    out["first_error"] = _table(
        "first_error",
        "First error (ProcessBench): each evaluator against the expert reference",
        [
            "condition",
            "evaluator",
            "kind",
            "mode",
            "reference",
            "erroneous traces",
            "accuracy on erroneous",
            "correct traces",
            "accuracy on correct",
            "F1",
            "F1 interval",
            "left out",
        ],
        [
            [
                r["condition"],
                r["evaluator"],
                r["evaluator_kind"],
                r["mode"].replace("_", "-"),
                r["reference"],
                _num(r["n_erroneous"]),
                f"{_pct(r['acc_erroneous'])} "
                f"({_interval(r['acc_erroneous_low'], r['acc_erroneous_high'])})",
                _num(r["n_correct"]),
                f"{_pct(r['acc_correct'])} "
                f"({_interval(r['acc_correct_low'], r['acc_correct_high'])})",
                _num(r["f1"]),
                f"{_interval(r['f1_low'], r['f1_high'], pct=False)} "
                f"({r['f1_interval_method'] or '–'})",
                _num(r["n_undefined"] + r["n_unlabelled"]),
            ]
            for r in first_error.get("rows") or []
        ],
        note=first_error.get("interval_rule", ""),
        numeric_from=5,
    )
    out["first_error_coverage"] = _table(
        "first_error_coverage",
        "First-error coverage: traces per evaluator with a defined first error",
        [
            "evaluator",
            "kind",
            "mode",
            "traces",
            "defined",
            "error",
            "no error",
            "undefined: abstain",
            "undefined: unlabelled step",
        ],
        [
            [
                c["evaluator"],
                c["evaluator_kind"],
                c["mode"].replace("_", "-"),
                _num(c["n_traces"]),
                _num(c["n_defined"]),
                _num(c["n_error"]),
                _num(c["n_no_error"]),
                _num(c["n_undefined_abstain"]),
                _num(c["n_undefined_gap"]),
            ]
            for c in first_error.get("coverage") or []
        ],
        numeric_from=3,
    )
    out["annotator_agreement"] = _table(
        "annotator_agreement",
        "Each expert against every other evaluator (shared steps, gold and repeats left out)",
        ["expert", "other", "kind", "shared steps", "agreement", "Cohen's κ"],
        [
            [
                a["evaluator"],
                a["other"],
                a.get("other_kind") or "–",
                _num(a.get("n_shared")),
                _pct(a.get("percent_agreement")),
                _num(a.get("kappa")),
            ]
            for a in annotators.get("agreement") or []
        ],
        numeric_from=3,
    )
    return out


def blinding_headline(report: dict[str, Any]) -> dict[str, Any] | None:
    """The classifier's answer in words: can the blinded text give the condition away?"""
    blinding = report.get("blinding") or {}
    classifier = blinding.get("classifier")
    guesses = blinding.get("guesses") or {}
    if classifier is None and not blinding.get("index"):
        return {"classifier": None, "notes": blinding.get("notes") or []} if blinding else None
    headline: dict[str, Any] = {"classifier": None, "notes": blinding.get("notes") or []}
    if classifier is not None:
        auc, low, high = classifier.get("auc"), classifier.get("ci_low"), classifier.get("ci_high")
        if auc is None:
            verdict, tone = "undetermined", "maybe"
        elif low is not None and high is not None and low <= 0.5 <= high:
            verdict, tone = "no sign that the text gives the condition away", "yes"
        elif high is not None and high < 0.5:
            # Worse than chance out of fold: with few traces, holding some out shifts the
            # training mix the other way (a known cross-validation artefact), not a leak.
            verdict, tone = (
                "below chance, which cross-validation on few traces produces; no sign of a leak, "
                "but too few traces to be sure",
                "maybe",
            )
        elif auc < 0.6:
            verdict, tone = "a slight leak: the text barely predicts the condition", "maybe"
        else:
            verdict, tone = "the text predicts the condition: check the blinding", "no"
        sampled = classifier.get("n_population")
        headline["classifier"] = {
            "auc": _num(auc),
            "interval": _interval(low, high, pct=False),
            "n": _num(classifier.get("n")),
            "n_traces": _num(classifier.get("n_traces")),
            "n_population": _num(sampled) if sampled and sampled > classifier["n"] else None,
            "verdict": verdict,
            "tone": tone,
        }
    if guesses:
        headline["james_bi"] = _num(guesses.get("james_bi"))
        headline["n_guesses"] = _num(guesses.get("n"))
        headline["mapped"] = guesses.get("mapped")
    return headline


def likert_tests_line(report: dict[str, Any]) -> str:
    """Kruskal–Wallis per item in one sentence, e.g. for under the Likert figure."""
    parts = []
    for item in (report.get("likert") or {}).get("items") or []:
        kw = item.get("kruskal_wallis") or {}
        if kw.get("H") is None:
            continue
        df = f"({kw['df']})" if kw.get("df") is not None else ""
        parts.append(
            f"{item['item'].replace('_', ' ')}: H{df} = {kw['H']:.2f}, p {_p_words(kw.get('p'))}"
        )
    return ("Kruskal–Wallis across trace types — " + "; ".join(parts) + ".") if parts else ""


def _p_words(p: Any) -> str:
    if p is None:
        return "= –"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def report_context(report: dict[str, Any], *, standalone: bool) -> dict[str, Any]:
    """Everything the body template needs; figures inline (page) or as data URIs (file)."""
    figures = {}
    for name, svg in (
        ("error_rates", error_rate_svg(report)),
        ("answer_vs_step", answer_vs_step_svg(report)),
        ("likert", likert_svg(report)),
    ):
        if svg is not None:
            figures[name] = svg_data_uri(svg) if standalone else svg
    summary = {
        "parameters": report.get("parameters"),
        "blinding": report.get("blinding"),
        "error_rates": report.get("error_rates"),
        "ordering_agreement": report.get("ordering_agreement"),
    }
    methods = report.get("methods") or {}
    return {
        "report": report,
        "tables": _tables(report),
        "headlines": ordering_headlines(report),
        "findings": findings_display(report),
        "control_summary": control_summary_line(report),
        "finding_rules": [
            (VERDICT_LABELS.get(k, k), v)
            for k, v in ((report.get("findings") or {}).get("rules") or {}).items()
        ],
        "blinding_check": blinding_headline(report),
        "judge_flags": [
            {
                "judge": h["judge"],
                "flagged": bool(h.get("flagged")),
                "sensitivity_p": _p(h.get("sensitivity_p")),
                "specificity_p": _p(h.get("specificity_p")),
            }
            for h in (report.get("judge_by_condition") or {}).get("homogeneity") or []
        ],
        "likert_tests_line": likert_tests_line(report),
        "first_error": report.get("first_error") or {},
        "figures": figures,
        "standalone": standalone,
        "methods": [(METHOD_NAMES.get(k, k.replace("_", " ")), v) for k, v in methods.items()],
        "summary": summary,
        "table_names": list(report_tables(report)),
    }


def report_html(report: dict[str, Any]) -> str:
    """The stand-alone HTML report: one file, CSS inline, figures as data URIs, no scripts."""
    context = report_context(report, standalone=True)
    context["css"] = CSS_PATH.read_text(encoding="utf-8")
    return render_to_string("reports/report_standalone.html", context)


def report_page_parts(
    report: dict[str, Any], *, key: str, download_base: str, query: str, seconds: int
) -> dict[str, Any]:
    """The page's report body (figures, tables, findings) rendered once per report.

    Drawing the figures and formatting every table costs about a second even for the tiny
    demo; the body depends only on the report (cached under ``key``, the audit's data
    version and the settings) and the download links, so it is cached beside the report
    under the same key and a view that finds it only renders the page around it. Returns
    ``body`` (safe HTML), ``table_names`` and ``summary`` (the page's JSON data).
    """
    links = hashlib.sha256(f"{download_base}\0{query}".encode()).hexdigest()[:16]
    page_key = f"{key}:page:v{PAGE_BODY_VERSION}:{links}"
    parts = cache.get(page_key)
    if parts is None:
        context = report_context(report, standalone=False)
        context.update({"download_base": download_base, "query": query})
        parts = {
            "body": render_to_string("reports/_report_body.html", context),
            "table_names": context["table_names"],
            "summary": context["summary"],
        }
        cache.set(page_key, parts, seconds)
    return {**parts, "body": mark_safe(parts["body"])}  # rendered by our own template
