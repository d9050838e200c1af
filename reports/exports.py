"""A report's sections as flat tables (CSV, Parquet), and the long tables as files.

Every table is one pandas DataFrame with scalar cells: nested parts of a section either
become their own table (pairwise differences, Mann–Whitney pairs) or a JSON string cell
(confusion matrices).

CSV is written for spreadsheets, so every CSV the app writes goes through :func:`frame_to_csv`:
text cells that a spreadsheet would run as a formula are neutralised (:func:`csv_safe`, the
OWASP rule) and lines end in CRLF (RFC 4180), which also makes the csv writer quote a cell
holding a carriage return. Parquet keeps the raw values.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import pandas as pd

from auditapp.agreement.formats import CSV_RISKY_STARTS, csv_cell_safe

__all__ = [
    "REPORT_TABLES",
    "csv_safe",
    "frame_to_bytes",
    "frame_to_csv",
    "report_tables",
    "tables_zip",
]


def _safe_column(column: pd.Series) -> pd.Series:
    if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        return column  # numbers, booleans, dates: written as numbers, never prefixed
    try:
        # Vectorised; in an object column non-strings (a float, None) give False, so a number
        # in a mixed column stays a number.
        risky = column.str.startswith(CSV_RISKY_STARTS, na=False).astype(bool)
    except AttributeError:  # an object column without any string in it
        return column
    if not risky.any():
        return column
    out = column.copy()
    out[risky] = "'" + column[risky]
    return out


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) open as text in a spreadsheet.

    OWASP's rule for CSV injection: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab
    or a carriage return gets a leading apostrophe; so does one that already starts with an
    apostrophe, so that a spreadsheet (which hides one leading apostrophe) shows it as it was
    and ``auditapp.agreement.formats`` can undo it exactly when the file is read back. Numeric
    columns are untouched: ``-0.5`` in ``error_rate`` stays the number -0.5.

    >>> safe = csv_safe(pd.DataFrame({"t": ["=1+1", "-x", "ok"], "n": [-1.5, 2.0, 3.0]}))
    >>> safe["t"].tolist(), safe["n"].tolist()
    (["'=1+1", "'-x", 'ok'], [-1.5, 2.0, 3.0])
    """
    out = frame.copy()
    for position in range(out.shape[1]):
        out.isetitem(position, _safe_column(out.iloc[:, position]))
    out.columns = [csv_cell_safe(c) if isinstance(c, str) else c for c in out.columns]
    return out


def frame_to_csv(frame: pd.DataFrame) -> str:
    """The CSV every export writes: :func:`csv_safe` cells, a header, no index, CRLF lines."""
    return csv_safe(frame).to_csv(index=False, lineterminator="\r\n")


def _rows(rows: list[dict[str, Any]] | None) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame()
    flat = [
        {
            k: (json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v)
            for k, v in r.items()
        }
        for r in rows
    ]
    return pd.DataFrame(flat)


def _orderings(report: dict) -> pd.DataFrame:
    rows = []
    for o in report.get("orderings") or []:
        for rank, condition in enumerate(o["ranking"], start=1):
            rows.append(
                {
                    "evaluator": o["evaluator"],
                    "evaluator_kind": o["evaluator_kind"],
                    "rank": rank,
                    "condition": condition,
                    "error_rate": o["rates"].get(condition),
                }
            )
    return _rows(rows)


def _differences(report: dict) -> pd.DataFrame:
    rows = []
    for o in report.get("orderings") or []:
        for d in o.get("differences") or []:
            rows.append({"evaluator": o["evaluator"], "evaluator_kind": o["evaluator_kind"], **d})
    return _rows(rows)


def _section(name: str, part: str | None = None) -> Callable[[dict], pd.DataFrame]:
    def build(report: dict) -> pd.DataFrame:
        value = report.get(name)
        if value is None:
            return pd.DataFrame()
        if part is not None:
            value = value.get(part) if isinstance(value, dict) else None
        return _rows(value if isinstance(value, list) else None)

    return build


def _likert_tests(report: dict) -> pd.DataFrame:
    likert = report.get("likert") or {}
    rows = []
    for item in likert.get("items") or []:
        kw = item.get("kruskal_wallis") or {}
        rows.append(
            {
                "item": item["item"],
                "n": item.get("n"),
                "n_traces": item.get("n_traces"),
                "n_raters": item.get("n_raters"),
                "kruskal_wallis_H": kw.get("H"),
                "kruskal_wallis_p": kw.get("p"),
                "kruskal_wallis_df": kw.get("df"),
                "friedman_statistic": (item.get("friedman") or {}).get("statistic"),
                "friedman_p": (item.get("friedman") or {}).get("p"),
                "friedman_df": (item.get("friedman") or {}).get("df"),
                "friedman_n_raters": (item.get("friedman") or {}).get("n_raters"),
                "krippendorff_alpha_ordinal": item.get("krippendorff_alpha"),
            }
        )
    return _rows(rows)


def _likert_pairs(report: dict) -> pd.DataFrame:
    likert = report.get("likert") or {}
    rows = [
        {"item": item["item"], **pair}
        for item in likert.get("items") or []
        for pair in item.get("mann_whitney") or []
    ]
    return _rows(rows)


def step_series(report: dict) -> dict[str, dict[str, Any]]:
    """Per evaluator kind, its step error rate per condition: the kind's pooled row when it
    has several evaluators, else its one evaluator."""
    rates = report.get("error_rates") or []
    series: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(r["evaluator_kind"] for r in rates):
        rows = [r for r in rates if r["evaluator_kind"] == kind]
        pooled = [r for r in rows if r.get("pooled")]
        chosen = pooled or [r for r in rows if r["evaluator"] == rows[0]["evaluator"]]
        series[chosen[0]["evaluator"]] = {r["condition"]: r for r in chosen}
    return series


def hedging_by_condition(report: dict) -> dict[str, dict[str, Any]]:
    rows = (report.get("hedging_language") or {}).get("rows") or []
    return {r["condition"]: r for r in rows}


def _answer_vs_step(report: dict) -> pd.DataFrame:
    """Per condition: answer metrics, hedging language and each evaluator kind's step error
    rate and abstention rate — the paper's "answer metrics and hedging don't reveal it"."""
    answers = {a["condition"]: a for a in report.get("answer_metrics") or []}
    hedging = hedging_by_condition(report)
    series = step_series(report)
    conditions = sorted(set(answers) | {c for s in series.values() for c in s})
    rows = []
    for condition in conditions:
        a = answers.get(condition) or {}
        row = {
            "condition": condition,
            "accuracy": a.get("accuracy"),
            "sc_at_k": a.get("sc_at_k"),
            "ece": a.get("ece"),
            "brier": a.get("brier"),
            "hedging_language_rate": (hedging.get(condition) or {}).get("rate"),
            "hedging_ci_low": (hedging.get(condition) or {}).get("ci_low"),
            "hedging_ci_high": (hedging.get(condition) or {}).get("ci_high"),
        }
        for evaluator, by_condition in series.items():
            rate = by_condition.get(condition) or {}
            row[f"step_error_rate:{evaluator}"] = rate.get("error_rate")
            row[f"ci_low:{evaluator}"] = rate.get("ci_low")
            row[f"ci_high:{evaluator}"] = rate.get("ci_high")
            row[f"abstain_rate:{evaluator}"] = rate.get("abstain_rate")
        rows.append(row)
    return _rows(rows if answers or hedging else None)


def _findings(report: dict) -> pd.DataFrame:
    items = (report.get("findings") or {}).get("items") or []
    keep = (
        *("kind", "verdict", "a", "b", "conditions", "ranking_a", "ranking_b"),
        *("same_ordering", "p_same_ordering", "kendall_tau", "sentence", "rule", "table"),
    )
    return _rows([{k: item.get(k) for k in keep} for item in items])


def _control_summary(report: dict) -> pd.DataFrame:
    controls = report.get("controls") or {}
    rows = list(controls.get("summary") or [])
    for f in controls.get("style_blind") or []:
        rows.append(
            {
                "control": "style_blind",
                "level": "style-blind vs raw judge",
                "a": f["a"],
                "b": f["b"],
                "n_labels": None,
                "ranking_a": f["ranking_a"],
                "ranking_b": f["ranking_b"],
                "same_as_overall_a": None,
                "same_as_overall_b": None,
                "same_ordering": f["same_ordering"],
                "p_same_ordering": f["p_same_ordering"],
                "verdict": f["verdict"],
                "sentence": f["sentence"],
            }
        )
    return _rows(rows)


def _blinding_classifier(report: dict) -> pd.DataFrame:
    classifier = (report.get("blinding") or {}).get("classifier")
    return _rows([classifier] if classifier else None)


def _blinding_index(report: dict) -> pd.DataFrame:
    rows = (report.get("blinding") or {}).get("index") or []
    return _rows(rows)


def _blinding_batches(report: dict) -> pd.DataFrame:
    rows = [
        {
            **{k: v for k, v in row.items() if k != "top_features"},
            "top_features": "; ".join(
                f"{arm}: {', '.join(grams)}"
                for arm, grams in (row.get("top_features") or {}).items()
            ),
        }
        for row in (report.get("blinding") or {}).get("batches") or []
    ]
    return _rows(rows)


def sequential_rows(report: dict) -> list[dict[str, Any]]:
    """One row per batch × wave × quantity (an arm's error rate or a neighbours' gap)."""
    rows = []
    for batch in (report.get("sequential") or {}).get("batches") or []:
        for look in batch.get("looks") or []:
            common = {
                "batch": batch["batch"],
                "wave": look["wave"],
                "settled": look["settled"],
                "fired_here": batch.get("fired_at_wave") == look["wave"],
                "labels_more_per_arm": look.get("labels_more"),
            }
            for arm in look["arms"]:
                rows.append(
                    {
                        **common,
                        "quantity": f"error rate {arm['arm']}",
                        "labels": look["n_labels"].get(arm["arm"]),
                        "estimate": arm["estimate"],
                        "cs_low": arm["low"],
                        "cs_high": arm["high"],
                    }
                )
            for gap in look["gaps"]:
                rows.append(
                    {
                        **common,
                        "quantity": f"gap {gap['higher']} − {gap['lower']}",
                        "labels": None,
                        "estimate": gap["gap"],
                        "cs_low": gap["low"],
                        "cs_high": gap["high"],
                    }
                )
    return rows


# name → (builder, one-line description for docs and the page)
REPORT_TABLES: dict[str, tuple[Callable[[dict], pd.DataFrame], str]] = {
    "findings": (_findings, "the findings, from the rules in methods"),
    "error_rates": (_section("error_rates"), "error rate per evaluator × condition"),
    "orderings": (_orderings, "conditions ranked by error rate, per evaluator"),
    "ordering_differences": (_differences, "pairwise differences between conditions"),
    "ordering_agreement": (
        _section("ordering_agreement"),
        "does one evaluator reproduce another's ordering",
    ),
    "pairwise_agreement": (_section("pairwise_agreement"), "agreement between two evaluators"),
    "multi_rater": (_section("multi_rater"), "agreement among all evaluators / experts"),
    "answer_metrics": (_section("answer_metrics"), "accuracy, sc@k, ECE, Brier per condition"),
    "answer_metrics_by_control": (
        _section("answer_metrics_by_control"),
        "accuracy, sc@k, ECE, Brier per condition within each dataset and trace type",
    ),
    "answer_vs_step": (_answer_vs_step, "answer metrics beside step error rates, per condition"),
    "trace_vs_answer": (_section("trace_vs_answer"), "trace correct × answer correct"),
    "likert": (_section("likert", "rows"), "Likert items per trace type"),
    "likert_tests": (_likert_tests, "Kruskal–Wallis and ordinal alpha per Likert item"),
    "likert_pairs": (_likert_pairs, "pairwise Mann–Whitney with Holm correction"),
    "ppi": (_section("ppi", "rows"), "prediction-powered error rates"),
    "ppi_differences": (_section("ppi", "differences"), "prediction-powered differences"),
    "judge_by_condition": (
        _section("judge_by_condition", "rows"),
        "judge sensitivity/specificity per condition",
    ),
    "judge_homogeneity": (
        _section("judge_by_condition", "homogeneity"),
        "does the judge's accuracy differ by condition",
    ),
    "segmentation_gaps": (
        _section("robustness", "segmentation_gaps"),
        "condition gaps under each segmentation",
    ),
    "control_summary": (_control_summary, "does the ordering hold under each control"),
    "control_error_rates": (
        _section("controls", "error_rates"),
        "error rates within each level of each control",
    ),
    "control_differences": (
        _section("controls", "differences"),
        "pairwise differences within each level of each control",
    ),
    "hedging_language": (
        _section("hedging_language", "rows"),
        "share of steps with hedging language per condition",
    ),
    "blinding_classifier": (
        _blinding_classifier,
        "can the condition be predicted from blinded text (AUC; near 0.5 is good)",
    ),
    "blinding_index": (_blinding_index, "clinicians' guesses per condition; Bang's index"),
    "annotator_quality": (
        lambda r: _rows((r.get("annotators") or {}).get("quality")),
        "per expert: gold accuracy, hidden-repeat consistency, speed, abstention, flags",
    ),
    "annotator_agreement": (
        lambda r: _rows((r.get("annotators") or {}).get("agreement")),
        "each expert against every other evaluator",
    ),
    "first_error": (
        lambda r: _rows((r.get("first_error") or {}).get("rows")),
        "ProcessBench's first-error accuracies and F1 per condition × evaluator",
    ),
    "first_error_coverage": (
        lambda r: _rows((r.get("first_error") or {}).get("coverage")),
        "per evaluator: traces with a defined first error, and why the others are undefined",
    ),
    "blinding_batches": (
        _blinding_batches,
        "the leak gate per batch: classifier AUC on what its annotators were shown",
    ),
    "stratified_ppi": (
        lambda r: _rows(
            [
                {"batch": b["batch"], **row}
                for b in (r.get("stratified_ppi") or {}).get("batches") or []
                for row in b["rows"]
            ]
        ),
        "batches of the stratified PPI design: each arm's error rate, stratified estimator",
    ),
    "sequential": (
        lambda r: _rows(sequential_rows(r)),
        "waves: anytime-valid confidence sequences per arm and gap after each wave",
    ),
}


def report_tables(report: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of a report (empty frames included), in a stable order."""
    return {name: build(report) for name, (build, _) in REPORT_TABLES.items()}


def frame_to_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """CSV (UTF-8, header, no index, formulas neutralised) or Parquet (raw values) bytes."""
    if fmt == "csv":
        return frame_to_csv(frame).encode("utf-8")
    if fmt == "parquet":
        buffer = io.BytesIO()
        # Object columns of mixed None/str are fine for pyarrow; floats stay floats.
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ValueError(f"unknown table format {fmt!r}; use csv or parquet")


def tables_zip(report: dict[str, Any], extra: dict[str, pd.DataFrame] | None = None) -> bytes:
    """Every report table (and ``extra`` tables) as CSV plus the whole report as JSON, in one
    zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, frame in {**report_tables(report), **(extra or {})}.items():
            archive.writestr(f"{name}.csv", frame_to_csv(frame))
        archive.writestr("report.json", json.dumps(report, indent=2, ensure_ascii=False))
    return buffer.getvalue()
