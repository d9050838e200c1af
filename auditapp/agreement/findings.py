"""Findings written from pre-stated rules: does one evaluator reproduce another's ordering?

The report opens with these sentences; the rules below are printed in its methods, so a
reader can check every verdict against the table it links to.

For two evaluators over their common conditions (at least two), with each evaluator's
pairwise differences and their intervals (:mod:`auditapp.agreement.orderings`; a difference
is *significant* when its interval excludes 0):

- **does not reproduce** — for some pair of conditions the two point differences point in
  opposite directions, one of them is significant, and the other evaluator's interval rules
  that significant difference out (excludes its point estimate). An opposite point estimate
  whose wide interval still holds the other's difference is no evidence against it: that is
  *inconclusive* (findings-v1 called it "does not reproduce");
- **reproduces** — the two point orderings are the same and every difference that defines
  it (each pair of neighbours in the ranking) is significant, in the same direction, for
  both evaluators;
- **consistent with** — the point orderings are the same, but some defining difference is
  not significant for one of them (the sentence gives P(same ordering) and the intervals);
- **inconclusive** — anything else (the point orderings differ without a significant
  contradiction, or a rate is missing).

Examples
--------
>>> rules = FINDING_RULES["reproduces"]
>>> rules.startswith("the two point orderings are the same")
True
"""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["FINDING_RULES", "FINDING_RULES_VERSION", "ordering_finding", "ordering_findings"]

FINDING_RULES_VERSION = "findings-v2"
FINDING_RULES: dict[str, str] = {
    "does_not_reproduce": (
        "for some pair of conditions the two point differences have opposite signs, one of "
        "them is significant (its interval excludes 0), and the other evaluator's interval "
        "excludes that significant difference's point estimate"
    ),
    "reproduces": (
        "the two point orderings are the same and every difference that defines it (each "
        "pair of neighbours in the ranking) is significant, in the same direction, for both "
        "evaluators"
    ),
    "consistent_with": (
        "the point orderings are the same but some defining difference is not significant "
        "for one of the evaluators (the evidence is weak; P(same ordering) and the intervals "
        "are given)"
    ),
    "inconclusive": (
        "anything else: the point orderings differ without a contradiction as above (an "
        "opposite point estimate whose interval still holds the other's difference), or "
        "fewer than two conditions have rates for both"
    ),
}
VERDICT_WORDS = {
    "reproduces": "reproduces",
    "consistent_with": "is consistent with",
    "does_not_reproduce": "does not reproduce",
    "inconclusive": "is inconclusive about",  # the sentence is worded apart (see below)
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _difference_text(evaluator: str, d: dict[str, Any] | None) -> str:
    if d is None:
        return f"{evaluator}: –"
    return (
        f"{evaluator} {d['condition_a']} − {d['condition_b']} = {_pct(d['difference'])} "
        f"[{_pct(d.get('ci_low'))}, {_pct(d.get('ci_high'))}]"
    )


def _significant(d: dict[str, Any]) -> int:
    """+1 / −1 when the interval lies above / below 0, else 0."""
    low, high = d.get("ci_low"), d.get("ci_high")
    if low is None or high is None:
        return 0
    return 1 if low > 0 else (-1 if high < 0 else 0)


def _rules_out(d: dict[str, Any], orientation: int, value: float | None) -> bool:
    """Whether ``d``'s interval, read in the other evaluator's orientation, excludes ``value``."""
    low, high = d.get("ci_low"), d.get("ci_high")
    if low is None or high is None or value is None:
        return False
    if orientation < 0:
        low, high = -high, -low
    return value < low or value > high


def _sign(value: float | None) -> int:
    if value is None or value == 0:
        return 0
    return 1 if value > 0 else -1


def _by_pair(ordering: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["condition_a"], d["condition_b"]): d for d in ordering.get("differences") or []}


def _lookup(
    pairs: dict[tuple[str, str], dict[str, Any]], a: str, b: str
) -> tuple[dict[str, Any] | None, int]:
    """The difference of conditions ``a − b`` (flipped when stored as ``b − a``), and its
    orientation (+1 stored as is, −1 flipped)."""
    if (a, b) in pairs:
        return pairs[(a, b)], 1
    if (b, a) in pairs:
        return pairs[(b, a)], -1
    return None, 0


def ordering_finding(
    ordering_a: dict[str, Any],
    ordering_b: dict[str, Any],
    agreement: dict[str, Any],
    *,
    table: str = "ordering_differences",
) -> dict[str, Any]:
    """The finding for evaluator ``b`` reproducing evaluator ``a``'s ordering.

    Parameters
    ----------
    ordering_a, ordering_b : dict
        Report ``orderings`` entries (``evaluator``, ``ranking``, ``rates``, ``differences``
        with ``ci_low``/``ci_high``).
    agreement : dict
        The ``ordering_agreement`` row of the pair (``conditions``, ``same_ordering``,
        ``p_same_ordering``, ``kendall_tau``).
    table : str, keyword-only
        The table the finding links to.

    Returns
    -------
    dict
        ``verdict`` (a key of :data:`FINDING_RULES`), ``sentence``, ``a``, ``b``,
        ``conditions``, ``ranking_a``, ``ranking_b``, ``p_same_ordering``, ``kendall_tau``,
        ``defining`` (the defining differences, both evaluators), ``contradictions``,
        ``table``, ``rule``.

    Examples
    --------
    >>> def ordering(name, diff, low, high):
    ...     return {"evaluator": name, "ranking": ["A", "B"], "rates": {"A": 0.1, "B": 0.3},
    ...             "differences": [{"condition_a": "A", "condition_b": "B",
    ...                              "difference": diff, "ci_low": low, "ci_high": high}]}
    >>> agreement = {"conditions": ["A", "B"], "same_ordering": True, "p_same_ordering": 0.8}
    >>> ordering_finding(ordering("judge", -0.2, -0.3, -0.1),
    ...                  ordering("dr", -0.2, -0.4, 0.05), agreement)["verdict"]
    'consistent_with'
    """
    a, b = ordering_a["evaluator"], ordering_b["evaluator"]
    conditions = list(agreement.get("conditions") or [])
    pairs_a, pairs_b = _by_pair(ordering_a), _by_pair(ordering_b)
    rates_a = {c: ordering_a["rates"].get(c) for c in conditions}
    rates_b = {c: ordering_b["rates"].get(c) for c in conditions}
    ranking_a = [c for c in ordering_a["ranking"] if c in conditions]
    ranking_b = [c for c in ordering_b["ranking"] if c in conditions]
    p_same = agreement.get("p_same_ordering")
    same = agreement.get("same_ordering")

    contradictions = []
    for (ca, cb), da in pairs_a.items():
        if ca not in conditions or cb not in conditions:
            continue
        db, orientation = _lookup(pairs_b, ca, cb)
        if db is None:
            continue
        sig_a, sig_b = _significant(da), orientation * _significant(db)
        point_a, point_b = _sign(da["difference"]), orientation * _sign(db["difference"])
        # a's significant difference, b pointing the other way with an interval ruling a's out
        a_against = sig_a and point_b == -sig_a and _rules_out(db, orientation, da["difference"])
        b_against = (
            sig_b and point_a == -sig_b and _rules_out(da, 1, orientation * db["difference"])
        )
        if a_against or b_against:
            contradictions.append({"a": da, "b": db})

    defining = []
    for low, high in itertools.pairwise(ranking_a):
        da, oa = _lookup(pairs_a, low, high)
        db, ob = _lookup(pairs_b, low, high)
        defining.append(
            {
                "conditions": [low, high],
                "a": da,
                "b": db,
                # both significant with low < high (difference low − high below 0)
                "significant_a": da is not None and oa * _significant(da) == -1,
                "significant_b": db is not None and ob * _significant(db) == -1,
            }
        )

    if len(conditions) < 2 or same is None:
        verdict = "inconclusive"
    elif contradictions:
        verdict = "does_not_reproduce"
    elif same and all(d["significant_a"] and d["significant_b"] for d in defining):
        verdict = "reproduces"
    elif same:
        verdict = "consistent_with"
    else:
        verdict = "inconclusive"

    order_a = " < ".join(f"{c} ({_pct(rates_a[c])})" for c in ranking_a)
    order_b = " < ".join(f"{c} ({_pct(rates_b[c])})" for c in ranking_b)
    p_text = "–" if p_same is None else f"{p_same:.3f}"
    head = f"{b} {VERDICT_WORDS[verdict]} {a}'s ordering of {len(conditions)} conditions"
    if verdict == "inconclusive":
        head = (
            f"Whether {b} reproduces {a}'s ordering of {len(conditions)} conditions is inconclusive"
        )
    if verdict == "reproduces":
        intervals = "; ".join(
            f"{_difference_text(a, d['a'])}, {_difference_text(b, d['b'])}" for d in defining
        )
        sentence = (
            f"{head} ({order_a}): every defining difference is significant in the same "
            f"direction for both ({intervals}); P(same ordering) = {p_text}."
        )
    elif verdict == "consistent_with":
        weak = [d for d in defining if not (d["significant_a"] and d["significant_b"])]
        intervals = "; ".join(
            f"{_difference_text(a, d['a'])}, {_difference_text(b, d['b'])}" for d in weak
        )
        sentence = (
            f"{head} ({order_a}), but the evidence is weak: P(same ordering) = {p_text}, and "
            f"not every defining difference is significant for both ({intervals})."
        )
    elif verdict == "does_not_reproduce":
        intervals = "; ".join(
            f"{_difference_text(a, c['a'])}, {_difference_text(b, c['b'])}" for c in contradictions
        )
        sentence = (
            f"{head}: for a pair of conditions they point in opposite directions, one "
            f"significantly, and the other's interval rules that difference out ({intervals}); "
            f"{a}: {order_a}; {b}: {order_b}; P(same ordering) = {p_text}."
        )
    elif len(conditions) < 2 or same is None:
        sentence = f"{head}: fewer than two conditions have error rates for both."
    else:
        sentence = (
            f"{head}: the point orderings differ ({a}: {order_a}; {b}: {order_b}), but no "
            "interval rules out the other's difference; P(same ordering) = "
            f"{p_text}."
        )
    return {
        "kind": "ordering",
        "verdict": verdict,
        "sentence": sentence,
        "a": a,
        "b": b,
        "conditions": conditions,
        "ranking_a": ranking_a,
        "ranking_b": ranking_b,
        "same_ordering": same,
        "p_same_ordering": p_same,
        "kendall_tau": agreement.get("kendall_tau"),
        "defining": defining,
        "contradictions": contradictions,
        "table": table,
        "rule": FINDING_RULES[verdict],
    }


def ordering_findings(
    orderings: list[dict[str, Any]],
    agreements: list[dict[str, Any]],
    *,
    table: str = "ordering_differences",
) -> list[dict[str, Any]]:
    """One finding per (judge, expert) pair — the expert reproducing the judge — or, when the
    audit has no such pair, per pair of evaluators that have an ordering agreement row."""
    by_name = {o["evaluator"]: o for o in orderings}
    kinds = {o["evaluator"]: o["evaluator_kind"] for o in orderings}
    expert_judge = [
        p for p in agreements if {kinds.get(p["a"]), kinds.get(p["b"])} == {"expert", "judge"}
    ]
    out = []
    for pair in expert_judge or agreements:
        a, b = pair["a"], pair["b"]
        if a not in by_name or b not in by_name:
            continue
        # The expert (or the second evaluator) reproduces the judge (the first).
        if kinds.get(a) == "expert" and kinds.get(b) == "judge":
            a, b = b, a
        out.append(ordering_finding(by_name[a], by_name[b], pair, table=table))
    return out
