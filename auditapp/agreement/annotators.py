"""Annotator quality: how far each expert's labels can be trusted, from what the audit built in.

Per expert, from their own labels (``annotator_quality``):

* **gold accuracy**: the share of gold items (steps with a known verdict, mixed in unannounced)
  they labelled as the reference says, with a Wilson interval; abstentions count as misses;
* **hidden-repeat consistency**: for each step shown twice (the original and an unannounced
  repeat), whether the two verdicts agree — percent agreement and Cohen's κ over the pairs;
* **median seconds per item** and the **abstention share** (over their non-gold labels);
* **agreement with every other evaluator** (``annotator_agreement``): percent and Cohen's κ
  on the steps both labelled (gold items and repeats left out), experts and judges alike.

An expert is **flagged** on a measure only when the evidence says they fall short of the
plan's threshold: the whole interval lies below it (gold accuracy), or the point estimate does
where no interval is computed (consistency, speed, abstention); "watch" when the point
estimate falls short but the interval still reaches the threshold. A flag is for the
researcher to look at, never an automatic exclusion.

Examples
--------
>>> import pandas as pd
>>> items = pd.DataFrame({
...     "evaluator": ["a"] * 4, "unit": [3, 1, 2, 1],
...     "verdict": ["error", "correct", "error", "error"],
...     "is_gold": [True, False, False, False], "gold_verdict": ["error", None, None, None],
...     "is_repeat": [False, False, False, True], "elapsed_ms": [4000, 6000, 8000, 5000]})
>>> row = annotator_quality(items).iloc[0]
>>> [float(row[k]) for k in ("gold_accuracy", "repeat_pairs", "repeat_agreement", "median_seconds")]
[1.0, 1.0, 0.0, 5.5]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from auditapp.agreement.coefficients import cohen_kappa
from auditapp.agreement.rates import wilson_interval

__all__ = ["QualityThresholds", "annotator_agreement", "annotator_quality"]


@dataclass(frozen=True)
class QualityThresholds:
    """Below these an expert is flagged (the analysis plan may set its own)."""

    gold_accuracy: float = 0.8
    repeat_agreement: float = 0.7
    min_median_seconds: float = 3.0
    max_abstain_share: float = 0.3


def _kappa(first: pd.Series, second: pd.Series) -> float | None:
    data = pd.DataFrame(
        {
            "unit": np.r_[np.arange(first.size), np.arange(second.size)],
            "rater": ["first"] * first.size + ["second"] * second.size,
            "value": np.r_[first.to_numpy(), second.to_numpy()],
        }
    )
    try:
        kappa = cohen_kappa(data).kappa
    except ValueError:
        return None
    return None if not np.isfinite(kappa) else float(kappa)


def _flag(short: bool, evident: bool) -> str:
    return "flag" if short and evident else ("watch" if short else "")


def annotator_quality(
    items: pd.DataFrame,
    *,
    thresholds: QualityThresholds | None = None,
    confidence_level: float = 0.95,
) -> pd.DataFrame:
    """One row per expert (module doc). ``items``: one row per label the expert gave, with
    ``evaluator, unit, verdict, is_gold, gold_verdict, is_repeat, elapsed_ms``."""
    thresholds = thresholds or QualityThresholds()
    required = {
        "evaluator",
        "unit",
        "verdict",
        "is_gold",
        "gold_verdict",
        "is_repeat",
        "elapsed_ms",
    }
    missing = required - set(items.columns)
    if missing:
        raise ValueError(f"items lacks column(s) {', '.join(sorted(missing))}")
    rows = []
    for evaluator, own in items.groupby("evaluator", sort=True):
        gold = own[own["is_gold"].astype(bool)]
        regular = own[~own["is_gold"].astype(bool)]
        n_gold = len(gold)
        hits = int((gold["verdict"] == gold["gold_verdict"]).sum())
        low, high = wilson_interval(hits, n_gold, confidence_level=confidence_level)
        accuracy = hits / n_gold if n_gold else None
        originals = regular[~regular["is_repeat"].astype(bool)].drop_duplicates("unit")
        repeats = regular[regular["is_repeat"].astype(bool)].drop_duplicates("unit")
        pairs = originals.merge(repeats, on="unit", suffixes=("_first", "_again"))
        agreement = (
            float((pairs["verdict_first"] == pairs["verdict_again"]).mean()) if len(pairs) else None
        )
        kappa = _kappa(pairs["verdict_first"], pairs["verdict_again"]) if len(pairs) else None
        seconds = (
            float(np.median(own["elapsed_ms"].to_numpy(dtype=float)) / 1000) if len(own) else None
        )
        abstain = float((regular["verdict"] == "abstain").mean()) if len(regular) else None
        flags = {
            "gold": _flag(
                accuracy is not None and accuracy < thresholds.gold_accuracy,
                n_gold > 0 and float(high) < thresholds.gold_accuracy,
            ),
            "repeats": _flag(
                agreement is not None and agreement < thresholds.repeat_agreement, True
            ),
            "speed": _flag(seconds is not None and seconds < thresholds.min_median_seconds, True),
            "abstention": _flag(
                abstain is not None and abstain > thresholds.max_abstain_share, True
            ),
        }
        rows.append(
            {
                "evaluator": evaluator,
                "n_labels": len(regular),
                "gold_items": n_gold,
                "gold_correct": hits,
                "gold_accuracy": accuracy,
                "gold_ci_low": float(low) if n_gold else None,
                "gold_ci_high": float(high) if n_gold else None,
                "repeat_pairs": len(pairs),
                "repeat_agreement": agreement,
                "repeat_kappa": kappa,
                "median_seconds": seconds,
                "abstain_share": abstain,
                "flags": ", ".join(f"{k}: {v}" for k, v in flags.items() if v),
            }
        )
    return pd.DataFrame(rows)


def annotator_agreement(
    experts: pd.DataFrame, others: pd.DataFrame, *, min_shared: int = 5
) -> pd.DataFrame:
    """Each expert against every other evaluator on the steps both labelled.

    ``experts`` and ``others``: ``evaluator, unit, verdict`` (``others`` may include the
    experts themselves: an expert is never compared with itself), gold items and repeats
    already left out. Pairs sharing fewer than ``min_shared`` steps get no κ."""
    rows = []
    # Only steps some expert labelled can be shared: dropping the rest first keeps a
    # million judge verdicts out of the per-evaluator indexes (the rows are unchanged).
    columns = [c for c in ("evaluator", "evaluator_kind", "unit", "verdict") if c in others]
    others = others.loc[others["unit"].isin(experts["unit"].unique()), columns]
    for expert, own in experts.groupby("evaluator", sort=True):
        mine = own.drop_duplicates("unit").set_index("unit")["verdict"]
        for other, theirs in others.groupby("evaluator", sort=True):
            if other == expert:
                continue
            shared = theirs.drop_duplicates("unit").set_index("unit")["verdict"]
            both = mine.index.intersection(shared.index)
            if len(both) == 0:
                continue
            a, b = mine.loc[both], shared.loc[both]
            kind = theirs["evaluator_kind"].iloc[0] if "evaluator_kind" in theirs else ""
            rows.append(
                {
                    "evaluator": expert,
                    "other": other,
                    "other_kind": kind,
                    "n_shared": len(both),
                    "percent_agreement": float((a.to_numpy() == b.to_numpy()).mean()),
                    "kappa": _kappa(a, b) if len(both) >= min_shared else None,
                }
            )
    return pd.DataFrame(
        rows,
        columns=["evaluator", "other", "other_kind", "n_shared", "percent_agreement", "kappa"],
    )
