"""Agreement coefficients on long tables: one row per (unit, rater, value).

Every function reads a long table whose column names are given by the keyword arguments
``unit``, ``rater`` and ``value``. A unit may be rated by any subset of raters; a row whose
value is missing (NaN/None) counts as no rating. A rater may rate a unit at most once.

Conventions shared by the multi-rater coefficients (Gwet 2014, *Handbook of Inter-Rater
Reliability*, 4th ed., ch. 2; the same arithmetic as Gwet's R package ``irrCAC``):

* observed agreement ``p_a`` is the mean, over the units with at least two ratings, of the
  share of agreeing ordered pairs of ratings in that unit,
  ``sum_k r_ik (r_ik - 1) / (r_i (r_i - 1))``;
* the category shares ``pi_k`` are the mean, over all units with at least one rating, of the
  unit's share of ratings in category ``k``, ``r_ik / r_i``.

With every unit rated by the same raters these reduce to Fleiss (1971). Chance-corrected
coefficients whose chance agreement is 1 (every rating in one category) are undefined and
returned as ``nan`` (``None`` in the dict results, which are meant for JSON).

Examples
--------
Krippendorff's (2011) reliability data, four coders and twelve units, with gaps:

>>> table = krippendorff_2011_example()
>>> round(krippendorff_alpha(table, level="nominal"), 3)
0.743
>>> round(fleiss_kappa(table), 5), round(gwet_ac1(table), 5)
(0.76117, 0.77544)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import krippendorff as _krippendorff
import numpy as np
import pandas as pd
from scipy import stats

from auditapp.agreement._validate import (
    plain,
    require_columns,
    require_confidence_level,
    require_no_duplicates,
    require_one_of,
)
from auditapp.agreement.formats import VERDICTS  # correct, error, abstain: confusion order

__all__ = [
    "VERDICTS",
    "KappaResult",
    "agreement_summary",
    "cohen_kappa",
    "confusion_matrix",
    "fleiss_kappa",
    "gwet_ac1",
    "krippendorff_2011_example",
    "krippendorff_alpha",
    "multi_rater_agreement",
    "pairwise_agreement",
    "percent_agreement",
]

Level = Literal["nominal", "ordinal", "interval", "ratio"]
AbstainRule = Literal["category", "missing"]

LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")
ABSTAIN_RULES: tuple[str, ...] = ("category", "missing")


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa with its asymptotic standard error and confidence interval.

    Attributes
    ----------
    kappa : float
        Cohen's (1960) kappa; ``nan`` when chance agreement is 1.
    se : float
        Large-sample standard error of Fleiss, Cohen & Everitt (1969), the non-null variance
        (the one PROC FREQ reports as ASE and ``statsmodels`` as ``std_kappa``).
    ci_low, ci_high : float
        ``kappa -/+ z * se`` (normal quantile), clipped to [-1, 1].
    n : int
        Units rated by both raters.
    """

    kappa: float
    se: float
    ci_low: float
    ci_high: float
    n: int


def krippendorff_2011_example() -> pd.DataFrame:
    """Krippendorff's (2011) reliability data as a long table (``unit, rater, value``).

    Four coders (A-D) rate twelve units on a 1-5 scale; 41 of the 48 cells are filled.
    Published alphas: nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797
    (Krippendorff, K. 2011, *Computing Krippendorff's Alpha-Reliability*, sec. E).

    Examples
    --------
    >>> krippendorff_2011_example().shape
    (41, 3)
    """
    n = None
    matrix = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        "C": [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    }
    rows = [
        (unit + 1, rater, value)
        for rater, values in matrix.items()
        for unit, value in enumerate(values)
        if value is not None
    ]
    return pd.DataFrame(rows, columns=["unit", "rater", "value"])


# --------------------------------------------------------------------------- long tables


def _ratings(data: pd.DataFrame, unit: str, rater: str, value: str) -> pd.DataFrame:
    """The non-missing ratings of ``data`` as a frame with columns unit, rater, value."""
    require_columns(data, [unit, rater, value], name="data")
    for role, column in (("unit", unit), ("rater", rater)):
        if data[column].isna().any():
            row = int(np.flatnonzero(data[column].isna().to_numpy())[0])
            raise ValueError(f"data row {row}: the {role} column {column!r} is missing")
    ratings = data.loc[data[value].notna(), [unit, rater, value]]
    require_no_duplicates(ratings, [unit, rater], name="data")
    if ratings.empty:
        raise ValueError(f"data has no ratings: column {value!r} is empty or all missing")
    return ratings


def _category_codes(
    values: pd.Series, categories: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of ``values`` and the category array they index."""
    if categories is None:
        try:
            codes, uniques = pd.factorize(values, sort=True)
        except TypeError:  # values of mixed types cannot be sorted; keep first-seen order
            codes, uniques = pd.factorize(values, sort=False)
        return codes.astype(np.int64), np.asarray(uniques, dtype=object)
    cats = pd.Index(list(categories))
    if not cats.is_unique:
        raise ValueError(f"categories repeat a value: {list(categories)!r}")
    codes = cats.get_indexer(values)
    if (codes < 0).any():
        unknown = pd.unique(values[codes < 0])[:5]
        raise ValueError(
            f"value(s) {', '.join(repr(plain(v)) for v in unknown)} are not among the "
            f"categories {', '.join(repr(plain(c)) for c in cats)}"
        )
    return codes.astype(np.int64), np.asarray(cats, dtype=object)


def _count_matrix(
    ratings: pd.DataFrame, unit: str, value: str, categories: Sequence[Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Units x categories matrix of rating counts, over units with at least one rating."""
    codes, cats = _category_codes(ratings[value], categories)
    unit_codes, units = pd.factorize(ratings[unit])
    q = len(cats)
    flat = np.bincount(unit_codes * q + codes, minlength=len(units) * q)
    return flat.reshape(len(units), q), cats


def _observed_agreement(counts: np.ndarray) -> float:
    """Mean share of agreeing rating pairs over the units with >= 2 ratings."""
    r = counts.sum(axis=1)
    pairable = r >= 2
    if not pairable.any():
        raise ValueError(
            "no unit has two or more ratings, so agreement is not defined; "
            "check the unit and rater columns"
        )
    c = counts[pairable]
    rp = r[pairable]
    return float(((c * (c - 1)).sum(axis=1) / (rp * (rp - 1))).mean())


def _category_shares(counts: np.ndarray) -> np.ndarray:
    """Mean over units (>= 1 rating) of each unit's share of ratings per category."""
    r = counts.sum(axis=1, keepdims=True)
    return (counts / r).mean(axis=0)


def _chance_corrected(p_a: float, p_e: float) -> float:
    if math.isclose(p_e, 1.0):
        return math.nan
    return (p_a - p_e) / (1.0 - p_e)


def _fleiss_from_counts(counts: np.ndarray) -> float:
    pi = _category_shares(counts)
    return _chance_corrected(_observed_agreement(counts), float((pi**2).sum()))


def _ac1_from_counts(counts: np.ndarray) -> float:
    p_a = _observed_agreement(counts)
    q = counts.shape[1]
    if q < 2:  # one category: no chance disagreement to correct for (irrCAC convention)
        return p_a
    pi = _category_shares(counts)
    return _chance_corrected(p_a, float((pi * (1 - pi)).sum() / (q - 1)))


def _kappa_from_table(table: np.ndarray, confidence_level: float) -> KappaResult:
    """Cohen's kappa, Fleiss-Cohen-Everitt (1969) SE and normal interval from a square table."""
    table = np.asarray(table, dtype=float)
    n = int(table.sum())
    if n == 0:
        return KappaResult(math.nan, math.nan, math.nan, math.nan, 0)
    p = table / n
    row = p.sum(axis=1)
    col = p.sum(axis=0)
    p_o = float(np.trace(p))
    p_e = float(row @ col)
    kappa = _chance_corrected(p_o, p_e)
    if math.isnan(kappa):
        return KappaResult(math.nan, math.nan, math.nan, math.nan, n)
    term_a = float((np.diag(p) * (1 - (row + col) * (1 - kappa)) ** 2).sum())
    off = p * (col[:, None] + row[None, :]) ** 2
    np.fill_diagonal(off, 0.0)
    term_b = (1 - kappa) ** 2 * float(off.sum())
    term_c = (kappa - p_e * (1 - kappa)) ** 2
    variance = max(term_a + term_b - term_c, 0.0) / ((1 - p_e) ** 2 * n)
    se = math.sqrt(variance)
    z = float(stats.norm.ppf(0.5 + confidence_level / 2))
    return KappaResult(
        kappa=kappa,
        se=se,
        ci_low=max(kappa - z * se, -1.0),
        ci_high=min(kappa + z * se, 1.0),
        n=n,
    )


def _pair_table(a: np.ndarray, b: np.ndarray, q: int) -> np.ndarray:
    """q x q table of code pairs, rows from ``a``; entries < 0 (missing) are skipped."""
    both = (a >= 0) & (b >= 0)
    return np.bincount(a[both] * q + b[both], minlength=q * q).reshape(q, q)


def _wide_codes(
    ratings: pd.DataFrame,
    unit: str,
    rater: str,
    value: str,
    categories: Sequence[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units x raters matrix of category codes (-1 = not rated), the raters, the categories."""
    codes, cats = _category_codes(ratings[value], categories)
    unit_codes, _ = pd.factorize(ratings[unit])
    rater_codes, raters = pd.factorize(ratings[rater], sort=_sortable(ratings[rater]))
    wide = np.full((unit_codes.max() + 1, len(raters)), -1, dtype=np.int64)
    wide[unit_codes, rater_codes] = codes
    return wide, np.asarray(raters, dtype=object), cats


def _sortable(series: pd.Series) -> bool:
    try:
        series.drop_duplicates().sort_values()
    except TypeError:
        return False
    return True


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# --------------------------------------------------------------------------- coefficients


def percent_agreement(
    data: pd.DataFrame, *, unit: str = "unit", rater: str = "rater", value: str = "value"
) -> float:
    """Mean pairwise percent agreement.

    For each unit with ``r_i >= 2`` ratings, the share of the ``r_i (r_i - 1)`` ordered pairs
    of its ratings that agree, ``sum_k r_ik (r_ik - 1) / (r_i (r_i - 1))``; the result is the
    unweighted mean of these shares over those units. With two raters this is the share of
    jointly rated units on which they agree.

    Parameters
    ----------
    data : pandas.DataFrame
        Long table, one row per (unit, rater, value); missing values mean no rating.
    unit, rater, value : str
        Column names.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        On a missing column, a repeated (unit, rater), or no unit with two ratings.

    Examples
    --------
    >>> import pandas as pd
    >>> data = pd.DataFrame({"unit": [1, 1, 1, 2, 2], "rater": list("abcab"),
    ...                      "value": ["x", "x", "y", "y", "y"]})
    >>> round(percent_agreement(data), 4)   # unit 1: 2 of 6 pairs agree; unit 2: 2 of 2
    0.6667
    """
    counts, _ = _count_matrix(_ratings(data, unit, rater, value), unit, value)
    return _observed_agreement(counts)


def cohen_kappa(
    data: pd.DataFrame,
    *,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    confidence_level: float = 0.95,
) -> KappaResult:
    """Cohen's (1960) kappa between exactly two raters, with an asymptotic interval.

    Only units rated by both raters count. The standard error is the large-sample
    (non-null) one of Fleiss, Cohen & Everitt (1969), as in SAS PROC FREQ (ASE),
    ``statsmodels.stats.inter_rater.cohens_kappa`` (``std_kappa``) and ``irrCAC``; the
    interval is ``kappa -/+ z * se`` with the normal quantile, clipped to [-1, 1].

    Parameters
    ----------
    data : pandas.DataFrame
        Long table with exactly two distinct raters.
    unit, rater, value : str
        Column names.
    confidence_level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    KappaResult
        ``kappa`` is ``nan`` when chance agreement is 1 (both raters used one category).

    Raises
    ------
    ValueError
        Unless there are exactly two raters sharing at least one unit.

    Examples
    --------
    Wikipedia's 50 grant proposals (20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no):

    >>> import pandas as pd
    >>> pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 \\
    ...     + [("no", "no")] * 15
    >>> data = pd.DataFrame([(i, r, v) for i, pair in enumerate(pairs)
    ...                      for r, v in zip("AB", pair)], columns=["unit", "rater", "value"])
    >>> result = cohen_kappa(data)
    >>> round(result.kappa, 3), result.n
    (0.4, 50)
    """
    require_confidence_level(confidence_level)
    ratings = _ratings(data, unit, rater, value)
    raters = pd.unique(ratings[rater])
    if len(raters) != 2:
        raise ValueError(
            f"cohen_kappa needs exactly two raters in column {rater!r}; found {len(raters)}"
        )
    wide, _, cats = _wide_codes(ratings, unit, rater, value)
    table = _pair_table(wide[:, 0], wide[:, 1], len(cats))
    if table.sum() == 0:
        raise ValueError("the two raters share no unit, so kappa is not defined")
    return _kappa_from_table(table, confidence_level)


def fleiss_kappa(
    data: pd.DataFrame, *, unit: str = "unit", rater: str = "rater", value: str = "value"
) -> float:
    """Fleiss' (1971) kappa, generalised to a varying number of raters per unit.

    ``(p_a - p_e) / (1 - p_e)`` with ``p_a`` the mean pairwise agreement over units with at
    least two ratings and ``p_e = sum_k pi_k**2``, ``pi_k`` the mean over all rated units of
    the unit's share of category ``k`` (Gwet 2014, sec. 2.4; ``irrCAC::fleiss.kappa.raw``).
    When every unit has the same number of ratings this is exactly Fleiss (1971), as computed
    by ``statsmodels.stats.inter_rater.fleiss_kappa``.

    Parameters
    ----------
    data : pandas.DataFrame
        Long table, one row per (unit, rater, value); missing values mean no rating.
    unit, rater, value : str
        Column names.

    Returns
    -------
    float
        ``nan`` when every rating falls in one category.

    Examples
    --------
    >>> round(fleiss_kappa(krippendorff_2011_example()), 5)   # irrCAC vignette: 0.76117
    0.76117
    """
    counts, _ = _count_matrix(_ratings(data, unit, rater, value), unit, value)
    return _fleiss_from_counts(counts)


def gwet_ac1(
    data: pd.DataFrame,
    *,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    categories: Sequence[Any] | None = None,
) -> float:
    """Gwet's (2008) AC1 for any number of raters, missing ratings allowed.

    ``(p_a - p_e) / (1 - p_e)`` with ``p_a`` as in :func:`fleiss_kappa` and
    ``p_e = sum_k pi_k (1 - pi_k) / (q - 1)``, ``q`` the number of categories (Gwet 2008,
    eq. 18; Gwet 2014; ``irrCAC::gwet.ac1.raw``). With a single category ``p_e = 0``.

    Parameters
    ----------
    data : pandas.DataFrame
        Long table, one row per (unit, rater, value); missing values mean no rating.
    unit, rater, value : str
        Column names.
    categories : sequence, optional
        Every category the raters could choose. ``q`` depends on it, so pass the full scheme
        when some category went unused; by default the observed categories.

    Returns
    -------
    float

    Examples
    --------
    >>> round(gwet_ac1(krippendorff_2011_example()), 5)   # irrCAC vignette: 0.77544
    0.77544
    """
    counts, _ = _count_matrix(_ratings(data, unit, rater, value), unit, value, categories)
    return _ac1_from_counts(counts)


def krippendorff_alpha(
    data: pd.DataFrame,
    *,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    level: Level = "nominal",
    value_order: Sequence[Any] | None = None,
) -> float:
    """Krippendorff's alpha, missing ratings allowed; the ``krippendorff`` package computes it.

    Parameters
    ----------
    data : pandas.DataFrame
        Long table, one row per (unit, rater, value); missing values mean no rating.
    unit, rater, value : str
        Column names.
    level : {"nominal", "ordinal", "interval", "ratio"}
        Level of measurement (the difference function).
    value_order : sequence, optional
        For ``nominal`` and ``ordinal``: every possible value, in order. Required for
        ``ordinal`` unless the values are numbers (then their numeric order is used).
        Not accepted for ``interval`` and ``ratio``, whose values must be numbers.

    Returns
    -------
    float
        ``nan`` when the pairable values (units with >= 2 ratings) are all equal.

    Raises
    ------
    ValueError
        On an unknown level, non-numeric values where numbers are needed, a value missing
        from ``value_order``, or no unit with two ratings.

    Examples
    --------
    >>> table = krippendorff_2011_example()   # Krippendorff (2011): .743 .815 .849 .797
    >>> [round(krippendorff_alpha(table, level=lv), 3)
    ...  for lv in ("nominal", "ordinal", "interval", "ratio")]
    [0.743, 0.815, 0.849, 0.797]
    """
    require_one_of(level, LEVELS, name="level")
    ratings = _ratings(data, unit, rater, value)
    if level in ("interval", "ratio") and value_order is not None:
        raise ValueError(
            f"value_order applies to nominal and ordinal data; level={level!r} uses the "
            "numeric values themselves"
        )
    if level == "ordinal" and value_order is None and not _is_numeric(ratings[value]):
        raise ValueError(
            "level='ordinal' needs value_order (every value, lowest first) unless the "
            "values are numbers"
        )
    if level in ("interval", "ratio") and not _is_numeric(ratings[value]):
        raise ValueError(f"level={level!r} needs numeric values in column {value!r}")
    if level != "nominal" and value_order is None:
        # Numbers read as text ("10" < "9") must be ordered as numbers.
        ratings = ratings.assign(**{value: pd.to_numeric(ratings[value]).astype(float)})
    counts, cats = _count_matrix(ratings, unit, value, value_order)
    pairable = counts[counts.sum(axis=1) >= 2]
    if pairable.size == 0:
        _observed_agreement(counts)  # raises the shared "no unit has two ratings" error
    if (pairable.sum(axis=0) > 0).sum() < 2:
        return math.nan
    domain = cats.astype(float) if level in ("interval", "ratio") else np.arange(len(cats))
    return float(
        _krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level)
    )


def _is_numeric(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values.dtype):
        return False
    if pd.api.types.is_numeric_dtype(values.dtype):
        return True
    converted = pd.to_numeric(values, errors="coerce")
    return bool(converted.notna().all())


def confusion_matrix(
    data: pd.DataFrame,
    *,
    rater_a: Any,
    rater_b: Any,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    labels: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Counts of (rater_a's value, rater_b's value) over the units both rated.

    Parameters
    ----------
    data : pandas.DataFrame
        Long table, one row per (unit, rater, value).
    rater_a, rater_b : object
        The two raters; ``rater_a`` gives the rows, ``rater_b`` the columns.
    unit, rater, value : str
        Column names.
    labels : sequence, optional
        Row and column order (unused labels give zero rows/columns). By default the sorted
        values either rater used.

    Returns
    -------
    pandas.DataFrame
        Square table of int counts; index named ``rater_a``, columns named ``rater_b``.

    Examples
    --------
    >>> import pandas as pd
    >>> data = pd.DataFrame({"unit": [1, 1, 2, 2, 3], "rater": list("ababa"),
    ...                      "value": ["x", "x", "x", "y", "y"]})
    >>> confusion_matrix(data, rater_a="a", rater_b="b").to_dict()
    {'x': {'x': 1, 'y': 0}, 'y': {'x': 1, 'y': 0}}
    """
    ratings = _ratings(data, unit, rater, value)
    if rater_a == rater_b:
        raise ValueError(f"rater_a and rater_b are the same rater {rater_a!r}")
    present = set(pd.unique(ratings[rater]))
    absent = [r for r in (rater_a, rater_b) if r not in present]
    if absent:
        raise ValueError(f"rater(s) {', '.join(map(repr, absent))} not found in column {rater!r}")
    pair = ratings[ratings[rater].isin([rater_a, rater_b])]
    codes, cats = _category_codes(pair[value], labels)
    unit_codes, _ = pd.factorize(pair[unit])
    wide = np.full((unit_codes.max() + 1, 2), -1, dtype=np.int64)
    wide[unit_codes, np.where(pair[rater].to_numpy() == rater_a, 0, 1)] = codes
    table = _pair_table(wide[:, 0], wide[:, 1], len(cats))
    return pd.DataFrame(
        table,
        index=pd.Index(list(cats), name=rater_a),
        columns=pd.Index(list(cats), name=rater_b),
    )


def agreement_summary(
    data: pd.DataFrame,
    *,
    unit: str = "unit",
    rater: str = "rater",
    value: str = "value",
    level: Level = "nominal",
    value_order: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Every coefficient of this module for one long table, as a JSON-ready dict.

    ``level`` (and ``value_order``) apply to Krippendorff's alpha only; percent agreement,
    kappa and AC1 treat the values as nominal categories.

    Returns
    -------
    dict
        ``percent_agreement``, ``cohen_kappa`` (``None`` unless exactly two raters),
        ``cohen_kappa_ci_low``, ``cohen_kappa_ci_high``, ``fleiss_kappa``,
        ``krippendorff_alpha``, ``gwet_ac1``, ``level``, ``n_units`` (units with at least one
        rating), ``n_pairable_units`` (at least two), ``n_raters``, ``n_ratings``. Undefined
        coefficients are ``None``.

    Examples
    --------
    >>> summary = agreement_summary(krippendorff_2011_example(), level="interval")
    >>> summary["cohen_kappa"] is None, round(summary["krippendorff_alpha"], 3)
    (True, 0.849)
    >>> summary["n_units"], summary["n_pairable_units"], summary["n_raters"]
    (12, 11, 4)
    """
    ratings = _ratings(data, unit, rater, value)
    counts, _ = _count_matrix(ratings, unit, value)
    n_raters = int(ratings[rater].nunique())
    kappa: KappaResult | None = None
    if n_raters == 2:
        try:
            kappa = cohen_kappa(ratings, unit=unit, rater=rater, value=value)
        except ValueError:  # the two raters share no unit
            kappa = None
    alpha = krippendorff_alpha(
        ratings, unit=unit, rater=rater, value=value, level=level, value_order=value_order
    )
    return {
        "percent_agreement": _observed_agreement(counts),
        "cohen_kappa": None if kappa is None else _finite_or_none(kappa.kappa),
        "cohen_kappa_ci_low": None if kappa is None else _finite_or_none(kappa.ci_low),
        "cohen_kappa_ci_high": None if kappa is None else _finite_or_none(kappa.ci_high),
        "fleiss_kappa": _finite_or_none(_fleiss_from_counts(counts)),
        "krippendorff_alpha": _finite_or_none(alpha),
        "gwet_ac1": _finite_or_none(_ac1_from_counts(counts)),
        "level": level,
        "n_units": int(counts.shape[0]),
        "n_pairable_units": int((counts.sum(axis=1) >= 2).sum()),
        "n_raters": n_raters,
        "n_ratings": len(ratings),
    }


# --------------------------------------------------------------------------- labels format


def _labels_ratings(
    labels: pd.DataFrame, abstain: AbstainRule, evaluator_kind: str | None = None
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Labels as (unit, evaluator, verdict) ratings under the abstain rule, and the scheme."""
    require_one_of(abstain, ABSTAIN_RULES, name="abstain")
    needed = ["step_id", "evaluator", "verdict"]
    if evaluator_kind is not None:
        needed.append("evaluator_kind")
    require_columns(labels, needed, name="labels")
    frame = labels.loc[labels["verdict"].notna()]
    verdict = frame["verdict"].astype(str).str.strip().str.lower()
    unknown = ~verdict.isin(VERDICTS)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise ValueError(
            f"labels row {row}, column 'verdict': {frame['verdict'].iloc[row]!r} is not one "
            f"of {', '.join(map(repr, VERDICTS))}"
        )
    unit = frame["step_id"].astype(str)
    if "segmentation" in frame.columns:  # the same step id may exist under two segmentations
        unit = unit + "\x1f" + frame["segmentation"].fillna("default").astype(str)
    out = pd.DataFrame(
        {"unit": unit.to_numpy(), "evaluator": frame["evaluator"].to_numpy(), "verdict": verdict}
    )
    if evaluator_kind is not None:
        out = out[frame["evaluator_kind"].to_numpy() == evaluator_kind]
    require_no_duplicates(out, ["unit", "evaluator"], name="labels")
    if abstain == "missing":
        return out[out["verdict"] != "abstain"], VERDICTS[:2]
    return out, VERDICTS


def pairwise_agreement(
    labels: pd.DataFrame, *, abstain: AbstainRule, confidence_level: float = 0.95
) -> list[dict[str, Any]]:
    """Agreement of every pair of evaluators on the steps both labelled.

    Parameters
    ----------
    labels : pandas.DataFrame
        The labels long format; reads ``step_id``, ``evaluator``, ``verdict`` (correct, error
        or abstain; missing verdicts are skipped) and, when present, ``segmentation`` (a step
        is identified by step id and segmentation).
    abstain : {"category", "missing"}
        ``"category"``: abstain is a third verdict. ``"missing"``: abstain rows are dropped
        before pairing, so the result is agreement on the jointly non-abstained steps.
    confidence_level : float
        Coverage of the kappa interval.

    Returns
    -------
    list of dict
        One dict per pair ``a < b`` (evaluators in sorted order) with ``a``, ``b``, ``n``
        (jointly labelled steps), ``percent_agreement``, ``cohen_kappa``, ``kappa_se``,
        ``kappa_ci_low``, ``kappa_ci_high`` (see :func:`cohen_kappa`), ``gwet_ac1`` (with
        ``q`` = 3 or 2 verdicts of the scheme), ``confusion`` (``{a_verdict: {b_verdict:
        count}}``, rows for ``a``) and ``abstain``. Undefined values are ``None``.

    Examples
    --------
    >>> import pandas as pd
    >>> labels = pd.DataFrame({"step_id": [1, 1, 2, 2, 3, 3, 4, 4],
    ...     "evaluator": ["expert", "judge"] * 4,
    ...     "verdict": ["error", "error", "correct", "correct", "abstain", "error",
    ...                 "correct", "error"]})
    >>> row = pairwise_agreement(labels, abstain="missing")[0]
    >>> row["a"], row["b"], row["n"], row["percent_agreement"]
    ('expert', 'judge', 3, 0.6666666666666666)
    >>> row["confusion"]
    {'correct': {'correct': 1, 'error': 1}, 'error': {'correct': 0, 'error': 1}}
    >>> pairwise_agreement(labels, abstain="category")[0]["n"]
    4
    """
    require_confidence_level(confidence_level)
    ratings, scheme = _labels_ratings(labels, abstain)
    if ratings.empty:
        return []
    wide, evaluators, _ = _wide_codes(ratings, "unit", "evaluator", "verdict", scheme)
    q = len(scheme)
    rows = []
    for i, j in combinations(range(len(evaluators)), 2):
        table = _pair_table(wide[:, i], wide[:, j], q)
        n = int(table.sum())
        kappa = _kappa_from_table(table, confidence_level)
        if n:
            # With two raters per unit the multi-rater p_a and pi_k reduce to the table's.
            p_a = float(np.trace(table)) / n
            pi = (table.sum(axis=1) + table.sum(axis=0)) / (2 * n)
            ac1 = _chance_corrected(p_a, float((pi * (1 - pi)).sum() / (q - 1)))
        else:
            p_a = ac1 = math.nan
        rows.append(
            {
                "a": evaluators[i],
                "b": evaluators[j],
                "n": n,
                "percent_agreement": _finite_or_none(p_a),
                "cohen_kappa": _finite_or_none(kappa.kappa),
                "kappa_se": _finite_or_none(kappa.se),
                "kappa_ci_low": _finite_or_none(kappa.ci_low),
                "kappa_ci_high": _finite_or_none(kappa.ci_high),
                "gwet_ac1": _finite_or_none(ac1),
                "confusion": {
                    va: {vb: int(table[x, y]) for y, vb in enumerate(scheme)}
                    for x, va in enumerate(scheme)
                },
                "abstain": abstain,
            }
        )
    return rows


def multi_rater_agreement(
    labels: pd.DataFrame, *, abstain: AbstainRule, evaluator_kind: str | None = None
) -> dict[str, Any]:
    """Agreement among all evaluators (or all of one kind) on the labels long format.

    Parameters
    ----------
    labels : pandas.DataFrame
        The labels long format (``step_id``, ``evaluator``, ``verdict``, and
        ``evaluator_kind`` when filtering by kind).
    abstain : {"category", "missing"}
        As in :func:`pairwise_agreement`.
    evaluator_kind : str, optional
        Keep only evaluators of this kind (e.g. ``"expert"``).

    Returns
    -------
    dict
        ``percent_agreement``, ``fleiss_kappa``, ``krippendorff_alpha`` (nominal),
        ``gwet_ac1`` (``q`` = the verdicts of the scheme), ``n_units`` (steps with at least
        one label), ``n_pairable_units`` (at least two), ``n_raters``, ``abstain``,
        ``evaluator_kind``. Coefficients are ``None`` when no step has two labels.

    Examples
    --------
    >>> import pandas as pd
    >>> labels = pd.DataFrame({"step_id": [1, 1, 1, 2, 2, 2, 3, 3, 3],
    ...     "evaluator": ["e1", "e2", "j"] * 3,
    ...     "evaluator_kind": ["expert", "expert", "judge"] * 3,
    ...     "verdict": ["error", "error", "error", "correct", "abstain", "error",
    ...                 "correct", "correct", "error"]})
    >>> experts = multi_rater_agreement(labels, abstain="missing", evaluator_kind="expert")
    >>> experts["n_units"], experts["n_pairable_units"], experts["percent_agreement"]
    (3, 2, 1.0)
    >>> round(multi_rater_agreement(labels, abstain="category")["fleiss_kappa"], 4)   # 1/46
    0.0217
    """
    ratings, scheme = _labels_ratings(labels, abstain, evaluator_kind)
    result: dict[str, Any] = {
        "percent_agreement": None,
        "fleiss_kappa": None,
        "krippendorff_alpha": None,
        "gwet_ac1": None,
        "n_units": int(ratings["unit"].nunique()),
        "n_pairable_units": 0,
        "n_raters": int(ratings["evaluator"].nunique()),
        "abstain": abstain,
        "evaluator_kind": evaluator_kind,
    }
    if ratings.empty:
        return result
    counts, _ = _count_matrix(ratings, "unit", "verdict", scheme)
    n_pairable = int((counts.sum(axis=1) >= 2).sum())
    result["n_pairable_units"] = n_pairable
    if n_pairable == 0:
        return result
    pairable = counts[counts.sum(axis=1) >= 2]
    alpha = (
        math.nan
        if (pairable.sum(axis=0) > 0).sum() < 2
        else _krippendorff.alpha(
            value_counts=counts, value_domain=np.arange(len(scheme)), level_of_measurement="nominal"
        )
    )
    result.update(
        percent_agreement=_observed_agreement(counts),
        fleiss_kappa=_finite_or_none(_fleiss_from_counts(counts)),
        krippendorff_alpha=_finite_or_none(float(alpha)),
        gwet_ac1=_finite_or_none(_ac1_from_counts(counts)),
    )
    return result
