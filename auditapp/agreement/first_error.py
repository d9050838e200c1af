"""First-error indices and ProcessBench's metric (Zheng et al. 2024), from step verdicts.

ProcessBench ("Identifying Process Errors in Mathematical Reasoning") asks an evaluator for the
*earliest* wrong step of a trace, or that every step is correct, and scores it against a
reference with two accuracies and their harmonic mean:

* **accuracy on erroneous traces** — traces the reference says have an error: the predicted
  first-error index equals the reference's;
* **accuracy on correct traces** — traces the reference says have none: the prediction is
  "no error";
* **F1** — the harmonic mean 2·a·b / (a + b) of the two (0 when both are 0).

Here the evaluators' answers are read back from the long table of step verdicts, whatever mode
they were made in: a first-error answer is stored as step labels (before the mark correct, the
marked step an error, later steps unlabelled; "no error" = every step correct), and a step-mode
evaluator who labelled a whole trace has a first error too.

**Rule** (``FIRST_ERROR_RULE``, ``first-error-v1``): an evaluator's first error on a trace is
the lowest position k whose verdict is ``error`` *when every step before k has the verdict
``correct``*; "no error" only when every step of the trace has ``correct``. Anything else is
**undefined** — excluded from the metric and counted with its reason (``abstain`` before the
first error or instead of one; ``gap``: a step before the first error, or any step of a trace
without an error, unlabelled). Why stricter than "the lowest error seen": with steps 1-4
unlabelled, an error at step 5 is not known to be the *first* one.

**Intervals** (``INTERVAL_RULE``): Wilson score intervals for the two accuracies (traces are
the units; each trace counts once). For F1, a percentile bootstrap over traces, resampled
within each reference class (so each class keeps its size), when each class has at least
``MIN_BOOTSTRAP_TRACES`` traces and the bootstrap interval has positive width (resampling a
class's 0/1 hits is drawn as the binomial it is); otherwise the
**Wilson box**: the harmonic mean is increasing in both accuracies, so
[HM(a_low, b_low), HM(a_high, b_high)] with each Wilson interval at level 1 − α/2 covers F1
with probability at least 1 − α (the classes are disjoint sets of traces). It is never of zero
width at small n, where a bootstrap of 5 perfect traces would say [1, 1].

Pure numpy / pandas; no Django.

Examples
--------
>>> import pandas as pd
>>> v = pd.DataFrame({"trace": ["t1"] * 3 + ["t2"] * 2, "position": [1, 2, 3, 1, 2],
...                   "verdict": ["correct", "error", "correct", "correct", "correct"],
...                   "evaluator": "ann"})
>>> first_error_indices(v, n_steps={"t1": 3, "t2": 2})[["trace", "first_error"]].values.tolist()
[['t1', 2], ['t2', -1]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "FIRST_ERROR_RULE",
    "INTERVAL_RULE",
    "MIN_BOOTSTRAP_TRACES",
    "NO_ERROR",
    "evaluator_modes",
    "expert_consensus",
    "first_error_evaluation",
    "first_error_indices",
    "first_error_sentence",
    "harmonic_mean",
    "processbench_scores",
]

NO_ERROR = -1  # ProcessBench's label for "every step is correct"
MIN_BOOTSTRAP_TRACES = 50

FIRST_ERROR_RULE = (
    "first-error-v1: an evaluator's first error on a trace is the lowest step k labelled "
    "'error' when every step before k is labelled 'correct'; 'no error' only when every step "
    "of the trace is labelled 'correct'; otherwise undefined (an abstention, or an unlabelled "
    "step, before the first error or in a trace without one) and left out, counted."
)
INTERVAL_RULE = (
    "Wilson score intervals for the accuracy on erroneous and on correct traces (one trace, "
    "one unit). F1 = harmonic mean of the two; its interval is a percentile bootstrap over "
    f"traces within each reference class when each class has at least {MIN_BOOTSTRAP_TRACES} "
    "traces and the bootstrap interval has positive width, otherwise the Wilson box "
    "[HM(low_a, low_b), HM(high_a, high_b)] with each Wilson interval at level 1 - alpha/2 "
    "(conservative: the harmonic mean increases in both)."
)

_VERDICTS = ("correct", "error", "abstain")


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """2ab / (a + b); 0 when both are 0; None when either is None.

    >>> harmonic_mean(0.5, 1.0), harmonic_mean(0.0, 0.0), harmonic_mean(None, 1.0)
    (0.6666666666666666, 0.0, None)
    """
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def _wilson(count: int, n: int, confidence_level: float) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    z = NormalDist().inv_cdf(0.5 + confidence_level / 2.0)
    p = count / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    low = 0.0 if count == 0 else max(0.0, centre - half)
    high = 1.0 if count == n else min(1.0, centre + half)
    return low, high


def first_error_indices(
    verdicts: pd.DataFrame,
    *,
    n_steps: Mapping[Any, int] | pd.Series | None = None,
    trace: str = "trace",
    position: str = "position",
    verdict: str = "verdict",
    evaluator: str = "evaluator",
) -> pd.DataFrame:
    """Each evaluator's first-error index per trace they labelled (the module's rule).

    Parameters
    ----------
    verdicts : DataFrame
        One row per (evaluator, trace, position) with a verdict ``correct`` / ``error`` /
        ``abstain``; positions are 1-based. Other verdicts (``invalid``, empty) are ignored.
    n_steps : mapping or Series, optional
        Steps per trace. Without it a trace's length is the highest position any evaluator
        labelled — which makes an unlabelled *last* step invisible, so pass it when known.

    Returns
    -------
    DataFrame with ``evaluator, trace, n_steps, first_error`` (Int64: the position,
    ``NO_ERROR`` (-1) for no error, <NA> when undefined) and ``status`` (``error`` |
    ``no_error`` | ``undefined``) and ``reason`` (``abstain`` | ``gap`` | "").
    """
    columns = ["evaluator", "trace", "n_steps", "first_error", "status", "reason"]
    missing = [c for c in (trace, position, verdict, evaluator) if c not in verdicts]
    if missing:
        raise ValueError(f"first-error input lacks column(s): {', '.join(missing)}")
    frame = pd.DataFrame(
        {
            "evaluator": verdicts[evaluator].astype(str),
            "trace": verdicts[trace],
            "position": pd.to_numeric(verdicts[position], errors="coerce"),
            "verdict": verdicts[verdict].astype("string").str.strip().str.lower(),
        }
    )
    frame = frame[frame["verdict"].isin(_VERDICTS)]
    if frame.empty:
        return pd.DataFrame(columns=columns).astype({"first_error": "Int64"})
    if frame["position"].isna().any() or (frame["position"] < 1).any():
        raise ValueError("positions must be whole numbers from 1")
    frame["position"] = frame["position"].astype(np.int64)
    if frame.duplicated(["evaluator", "trace", "position"]).any():
        raise ValueError("one verdict per (evaluator, trace, position) expected")
    if n_steps is None:
        lengths = frame.groupby("trace")["position"].max()
    else:
        lengths = pd.Series(n_steps, dtype="int64") if isinstance(n_steps, Mapping) else n_steps
        lengths = lengths.astype(np.int64)
        unknown = set(frame["trace"].unique()) - set(lengths.index)
        if unknown:
            raise ValueError(f"n_steps lacks {len(unknown)} trace(s), e.g. {sorted(unknown)[0]!r}")
    frame["n_steps"] = frame["trace"].map(lengths).astype(np.int64)
    if (frame["position"] > frame["n_steps"]).any():
        raise ValueError("a position lies beyond its trace's n_steps")
    keys = ["evaluator", "trace"]
    big = np.iinfo(np.int64).max
    frame["err_pos"] = np.where(frame["verdict"] == "error", frame["position"], big)
    first_err = frame.groupby(keys, sort=True)["err_pos"].transform("min")
    # Steps that must be 'correct': those before the first error, or every step without one.
    before = frame["position"] < np.minimum(first_err, frame["n_steps"] + 1)
    frame["ok_before"] = before & (frame["verdict"] == "correct")
    frame["abstain_before"] = before & (frame["verdict"] == "abstain")
    grouped = frame.groupby(keys, sort=True).agg(
        n_steps=("n_steps", "first"),
        err_pos=("err_pos", "min"),
        ok_before=("ok_before", "sum"),
        abstain_before=("abstain_before", "any"),
    )
    has_error = grouped["err_pos"] != big
    needed = np.where(has_error, grouped["err_pos"] - 1, grouped["n_steps"])
    defined = grouped["ok_before"].to_numpy() == needed
    out = grouped.reset_index()
    first = np.where(has_error, grouped["err_pos"], NO_ERROR)
    out["first_error"] = pd.array(np.where(defined, first, 0), dtype="Int64")
    out.loc[~defined, "first_error"] = pd.NA
    out["status"] = np.where(~defined, "undefined", np.where(has_error, "error", "no_error"))
    out["reason"] = np.where(
        defined, "", np.where(grouped["abstain_before"].to_numpy(), "abstain", "gap")
    )
    return out[columns].reset_index(drop=True)


def expert_consensus(indices: pd.DataFrame, experts: list[str] | tuple[str, ...]) -> pd.Series:
    """Per trace, the first-error index a strict majority of ``experts`` with a defined index
    gave (``first_error_indices`` rows); traces without such a majority are left out.

    >>> rows = pd.DataFrame({"evaluator": ["a", "b", "c", "a", "b"],
    ...                      "trace": [1, 1, 1, 2, 2], "first_error": [2, 2, -1, 3, -1]})
    >>> expert_consensus(rows, ["a", "b", "c"]).to_dict()
    {1: 2}
    """
    rows = indices[indices["evaluator"].isin(list(experts)) & indices["first_error"].notna()]
    if rows.empty:
        return pd.Series(dtype="Int64")
    counts = rows.groupby(["trace", "first_error"]).size().rename("votes").reset_index()
    totals = rows.groupby("trace").size()
    counts["total"] = counts["trace"].map(totals)
    winners = counts[2 * counts["votes"] > counts["total"]]
    return pd.Series(
        winners["first_error"].to_numpy(), index=winners["trace"].to_numpy(), dtype="Int64"
    )


def processbench_scores(
    predicted: pd.Series,
    reference: pd.Series,
    *,
    confidence_level: float = 0.95,
    rng: np.random.Generator | None = None,
    resamples: int = 2000,
) -> dict[str, Any]:
    """ProcessBench's accuracies and F1 of ``predicted`` against ``reference`` (both trace →
    first-error index, ``NO_ERROR`` for none), over the traces where both are defined.

    >>> ref = pd.Series([2, 3, -1, -1], index=list("abcd"))
    >>> pred = pd.Series([2, 1, -1, 4], index=list("abcd"))
    >>> s = processbench_scores(pred, ref)
    >>> s["acc_erroneous"], s["acc_correct"], s["f1"], s["n_erroneous"], s["n_correct"]
    (0.5, 0.5, 0.5, 2, 2)
    """
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")
    ref = reference.dropna()
    pred = predicted.dropna()
    common = ref.index.intersection(pred.index)
    r = ref.loc[common].to_numpy(dtype=np.int64)
    p = pred.loc[common].to_numpy(dtype=np.int64)
    erroneous = r != NO_ERROR
    hit_err = (p == r)[erroneous]
    hit_ok = (p == NO_ERROR)[~erroneous]
    n_err, n_ok = int(hit_err.size), int(hit_ok.size)
    k_err, k_ok = int(hit_err.sum()), int(hit_ok.sum())
    acc_err = k_err / n_err if n_err else None
    acc_ok = k_ok / n_ok if n_ok else None
    err_low, err_high = _wilson(k_err, n_err, confidence_level)
    ok_low, ok_high = _wilson(k_ok, n_ok, confidence_level)
    f1 = harmonic_mean(acc_err, acc_ok)
    f1_low = f1_high = None
    method = None
    if f1 is not None:
        method = "wilson box"
        if rng is not None and resamples > 0 and min(n_err, n_ok) >= MIN_BOOTSTRAP_TRACES:
            # Resampling n 0/1 outcomes with replacement and taking the mean is exactly a
            # Binomial(n, k/n) / n draw: drawn as such, in O(resamples) memory.
            draws_err = rng.binomial(n_err, k_err / n_err, size=resamples) / n_err
            draws_ok = rng.binomial(n_ok, k_ok / n_ok, size=resamples) / n_ok
            total = draws_err + draws_ok
            with np.errstate(invalid="ignore", divide="ignore"):
                hm = np.where(total > 0, 2 * draws_err * draws_ok / total, 0.0)
            alpha = 1.0 - confidence_level
            low, high = np.quantile(hm, [alpha / 2, 1 - alpha / 2])
            if high > low:
                f1_low, f1_high, method = float(low), float(high), "stratified bootstrap"
        if method == "wilson box":
            box = 1.0 - (1.0 - confidence_level) / 2.0
            bl_err, bh_err = _wilson(k_err, n_err, box)
            bl_ok, bh_ok = _wilson(k_ok, n_ok, box)
            f1_low, f1_high = harmonic_mean(bl_err, bl_ok), harmonic_mean(bh_err, bh_ok)
    return {
        "n": n_err + n_ok,
        "n_erroneous": n_err,
        "n_correct": n_ok,
        "hits_erroneous": k_err,
        "hits_correct": k_ok,
        "acc_erroneous": acc_err,
        "acc_erroneous_low": err_low,
        "acc_erroneous_high": err_high,
        "acc_correct": acc_ok,
        "acc_correct_low": ok_low,
        "acc_correct_high": ok_high,
        "f1": f1,
        "f1_low": f1_low,
        "f1_high": f1_high,
        "f1_interval_method": method,
    }


def first_error_evaluation(
    verdicts: pd.DataFrame,
    *,
    evaluator_kinds: Mapping[str, str],
    conditions: Mapping[Any, str] | None = None,
    n_steps: Mapping[Any, int] | pd.Series | None = None,
    modes: Mapping[str, str] | None = None,
    confidence_level: float = 0.95,
    rng: np.random.Generator | None = None,
    resamples: int = 2000,
) -> dict[str, Any]:
    """Every evaluator against the expert reference, per condition and over all conditions.

    The reference for a judge is the experts' consensus (``expert_consensus``; with one expert,
    that expert); for an expert it is the consensus of the *other* experts (so nobody is
    scored against themselves); with one expert, experts get no row. ``verdicts`` is the
    ``first_error_indices`` input (``trace, position, verdict, evaluator``); ``conditions``
    maps trace → condition; ``modes`` maps evaluator → the mode it labelled in (shown).

    Returns ``{"rows": [...], "coverage": [...]}``: rows per (condition, evaluator) with
    ``processbench_scores`` and ``n_undefined`` (traces with a reference where this
    evaluator's index is undefined) and ``n_unlabelled`` (not labelled at all); coverage per
    evaluator: traces labelled, defined, and undefined by reason.
    """
    indices = first_error_indices(verdicts, n_steps=n_steps)
    experts = sorted(e for e, k in evaluator_kinds.items() if k == "expert")
    present = sorted(indices["evaluator"].unique()) if not indices.empty else []
    coverage = []
    for name in present:
        mine = indices[indices["evaluator"] == name]
        coverage.append(
            {
                "evaluator": name,
                "evaluator_kind": evaluator_kinds.get(name, "expert"),
                "mode": (modes or {}).get(name, "steps"),
                "n_traces": len(mine),
                "n_defined": int((mine["status"] != "undefined").sum()),
                "n_error": int((mine["status"] == "error").sum()),
                "n_no_error": int((mine["status"] == "no_error").sum()),
                "n_undefined_abstain": int((mine["reason"] == "abstain").sum()),
                "n_undefined_gap": int((mine["reason"] == "gap").sum()),
            }
        )
    rows: list[dict[str, Any]] = []
    all_traces = pd.Index(indices["trace"].unique()) if not indices.empty else pd.Index([])
    cond_of = pd.Series({t: (conditions or {}).get(t, "") for t in all_traces}, dtype=object)
    groups: list[tuple[str, pd.Index]] = [("(all)", all_traces)]
    if conditions:
        for condition in sorted({str(c) for c in cond_of.to_numpy()}):
            groups.append((condition, cond_of.index[cond_of.to_numpy() == condition]))
    by_evaluator = {
        name: frame.set_index("trace")["first_error"]
        for name, frame in indices.groupby("evaluator", sort=True)
    }
    references: dict[str, pd.Series] = {}
    for name in present:
        kind = evaluator_kinds.get(name, "expert")
        panel = [e for e in experts if e != name] if kind == "expert" else experts
        if panel:
            references[name] = expert_consensus(indices, panel)
    for condition, traces in groups:
        for name in present:
            if name not in references:
                continue
            ref = references[name]
            ref = ref[ref.index.isin(traces)]
            pred = by_evaluator[name]
            pred = pred[pred.index.isin(traces)]
            scores = processbench_scores(
                pred, ref, confidence_level=confidence_level, rng=rng, resamples=resamples
            )
            labelled = ref.index.isin(pred.index)
            rows.append(
                {
                    "condition": condition,
                    "evaluator": name,
                    "evaluator_kind": evaluator_kinds.get(name, "expert"),
                    "mode": (modes or {}).get(name, "steps"),
                    "reference": "other experts"
                    if evaluator_kinds.get(name, "expert") == "expert"
                    else ("expert consensus" if len(experts) > 1 else experts[0]),
                    "n_reference": int(ref.size),
                    **scores,
                    "n_undefined": int(labelled.sum()) - scores["n"],
                    "n_unlabelled": int((~labelled).sum()),
                }
            )
    return {"rows": rows, "coverage": coverage}


def evaluator_modes(labels: pd.DataFrame, judge_modes: Mapping[str, str] | None = None) -> dict:
    """Evaluator → the mode its labels were made in: the labels' ``mode`` column (most
    frequent value per evaluator; a missing column or value is ``steps``), then
    ``judge_modes`` for judges (their run's mode) on top.

    >>> evaluator_modes(pd.DataFrame({"evaluator": ["a", "b"]}), {"b": "first_error"})
    {'a': 'steps', 'b': 'first_error'}
    """
    modes: dict[str, str] = {}
    if "mode" in labels:
        filled = labels["mode"].astype(object).where(labels["mode"].notna(), "steps")
        counts = pd.DataFrame({"evaluator": labels["evaluator"].astype(str), "mode": filled})
        for name, group in counts.groupby("evaluator", sort=True):
            modes[str(name)] = str(group["mode"].value_counts().index[0])
    else:
        modes = {str(e): "steps" for e in labels["evaluator"].dropna().unique()}
    modes.update(judge_modes or {})
    return modes


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def first_error_sentence(row: Mapping[str, Any], *, confidence_level: float = 0.95) -> str:
    """One row of ``first_error_evaluation`` in words (what the page prints)."""
    level = f"{confidence_level:.0%}"
    parts = [
        f"{row['evaluator']} ({row['evaluator_kind']}, {row['mode'].replace('_', '-')} mode) "
        f"against {row['reference']}"
        + (f", condition {row['condition']}" if row["condition"] != "(all)" else "")
        + ":"
    ]
    if row["n_erroneous"]:
        parts.append(
            f"found the first error in {row['hits_erroneous']} of {row['n_erroneous']} "
            f"erroneous traces ({_pct(row['acc_erroneous'])}, {level} CI "
            f"{_pct(row['acc_erroneous_low'])}–{_pct(row['acc_erroneous_high'])})"
        )
    else:
        parts.append("no erroneous trace to score")
    if row["n_correct"]:
        parts.append(
            f"said 'no error' on {row['hits_correct']} of {row['n_correct']} correct traces "
            f"({_pct(row['acc_correct'])}, {_pct(row['acc_correct_low'])}–"
            f"{_pct(row['acc_correct_high'])})"
        )
    else:
        parts.append("no correct trace to score")
    sentence = parts[0] + " " + "; ".join(parts[1:])
    if row["f1"] is not None:
        sentence += (
            f"; F1 {row['f1']:.2f} ({row['f1_low']:.2f}–{row['f1_high']:.2f}, "
            f"{row['f1_interval_method']})"
        )
    else:
        sentence += "; F1 undefined (it needs both kinds of trace)"
    left_out = row["n_undefined"] + row["n_unlabelled"]
    if left_out:
        sentence += (
            f". {left_out} trace(s) with a reference left out ({row['n_undefined']} undefined "
            f"by the rule, {row['n_unlabelled']} not labelled)"
        )
    return sentence + "."
