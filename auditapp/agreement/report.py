"""The agreement report: every statistic of an audit as one JSON-serialisable dict.

:func:`report_compute` reads the three long formats and returns exactly these keys:

``error_rates``, ``orderings``, ``ordering_agreement``, ``pairwise_agreement``,
``multi_rater``, ``answer_metrics``, ``trace_vs_answer``, ``likert``, ``ppi``,
``judge_by_condition``, ``robustness``, ``blinding``, ``methods``.

No value is NaN (undefined numbers are ``None``); a section without input is an empty list or
``None``, never an error.

Examples
--------
>>> import numpy as np, pandas as pd
>>> labels = pd.DataFrame({"step_id": ["s1", "s2", "s3", "s4"],
...     "trace_id": ["t1", "t1", "t2", "t2"], "question_id": "q",
...     "condition": ["A", "A", "B", "B"], "evaluator": "judge-1",
...     "evaluator_kind": "judge", "verdict": ["error", "correct", "correct", "correct"]})
>>> report = report_compute(labels, rng=np.random.default_rng(0), resamples=50)
>>> list(report) == list(REPORT_KEYS)
True
>>> [(r["condition"], r["error_rate"]) for r in report["error_rates"]]
[('A', 0.5), ('B', 0.0)]
>>> report["answer_metrics"], report["likert"]
([], None)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from auditapp.agreement.answers import answer_metrics, answer_metrics_by_control, trace_vs_answer
from auditapp.agreement.blinding import (
    CLASSIFIER_MAX_RESAMPLES,
    CLASSIFIER_MAX_TEXTS,
    blinding_summary,
)
from auditapp.agreement.coefficients import multi_rater_agreement, pairwise_agreement
from auditapp.agreement.controls import (
    CONTROL_MAX_RESAMPLES,
    CONTROLS,
    control_analyses,
    style_blind_findings,
)
from auditapp.agreement.findings import (
    FINDING_RULES,
    FINDING_RULES_VERSION,
    ordering_findings,
)
from auditapp.agreement.formats import answers_validate, labels_validate, ratings_validate
from auditapp.agreement.hedging import HEDGING_LEXICON_VERSION, hedging_language_rates
from auditapp.agreement.judge_bias import judge_by_condition
from auditapp.agreement.likert import likert_summary
from auditapp.agreement.orderings import ordering_agreement, orderings
from auditapp.agreement.ppi import PPI_MIN_LABELS, PPI_MIN_TRACES, PPIEstimate, ppi_error_rates
from auditapp.agreement.rates import (
    ABSTAIN_RULES,
    SMALL_SAMPLE_TRACES,
    AbstainRule,
    ErrorRates,
    error_rates,
)
from auditapp.agreement.robustness import (
    gaps_from_rates,
    hidden_repeat_consistency,
    segmentation_gaps,
)

__all__ = ["REPORT_KEYS", "primary_segmentation", "report_compute"]

REPORT_KEYS: tuple[str, ...] = (
    "findings",
    "error_rates",
    "orderings",
    "ordering_agreement",
    "pairwise_agreement",
    "multi_rater",
    "answer_metrics",
    "answer_metrics_by_control",
    "trace_vs_answer",
    "likert",
    "ppi",
    "judge_by_condition",
    "robustness",
    "controls",
    "hedging_language",
    "blinding",
    "methods",
)


def _jsonable(value: Any) -> Any:
    """Plain JSON types: dataclasses to dicts, numpy scalars to Python, NaN/inf to None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, int | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _rate_rows(result: ErrorRates) -> list[dict[str, Any]]:
    return [
        {
            "evaluator": r.evaluator,
            "evaluator_kind": r.evaluator_kind,
            "condition": r.condition,
            "pooled": r.pooled,
            "n": r.n,
            "n_traces": r.n_traces,
            "n_abstain": r.n_abstain,
            "n_error": r.n_error,
            "error_rate": r.rate,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "wilson_low": r.wilson_low,
            "wilson_high": r.wilson_high,
            "abstain_rate": r.abstain_rate,
            "error_rate_abstain_as_error": r.rate_abstain_as_error,
            "error_rate_abstain_as_correct": r.rate_abstain_as_correct,
            "interval_method": r.method,
            "bootstrap_low": r.bootstrap_low,
            "bootstrap_high": r.bootstrap_high,
            "design_effect": r.design_effect,
            "n_effective": r.n_effective,
        }
        for r in result.rows
    ]


def _difference_rows(differences: Any) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(d), "significant": d.significant} for d in differences]


def _ordering_pairs(result: ErrorRates) -> list[tuple[str, str]]:
    """Every pair of evaluators, except a pooled kind with one of its own members."""
    series = result.evaluators()
    pairs = []
    for i, (a, kind_a, pooled_a) in enumerate(series):
        for b, kind_b, pooled_b in series[i + 1 :]:
            if (pooled_a and kind_a == kind_b) or (pooled_b and kind_a == kind_b):
                continue
            pairs.append((a, b))
    return pairs


def _flat_estimate(prefix: str, estimate: PPIEstimate) -> dict[str, Any]:
    head = f"{prefix}_" if prefix else ""
    return {
        f"{prefix}" if prefix else "estimate": estimate.estimate,
        f"{head}se": estimate.se,
        f"{head}ci_low": estimate.ci_low,
        f"{head}ci_high": estimate.ci_high,
        f"{head}clipped": estimate.clipped,
        f"{head}interval_method": estimate.method,
    }


def _segmentation_only(labels: pd.DataFrame) -> pd.DataFrame:
    """Rows that take part only in the segmentation control: every other control column
    blanked, so each label counts once per control."""
    blank = {c: None for c in CONTROLS if c != "segmentation" and c in labels.columns}
    return labels.assign(**blank)


def _style_blind_flags(labels: pd.DataFrame) -> dict[str, bool]:
    """Judge → its style-blind flag, for judges whose labels carry one."""
    if "style_blind" not in labels.columns:
        return {}
    # Three columns only: masking every column of a million-row frame costs ~0.3 s.
    narrow = labels[["evaluator", "evaluator_kind", "style_blind"]]
    judges = narrow[(narrow["evaluator_kind"] == "judge") & narrow["style_blind"].notna()]
    first = judges.groupby("evaluator", sort=True)["style_blind"].first()
    return {str(k): bool(v) for k, v in first.items()}


def primary_segmentation(frame: pd.DataFrame, requested: str | None = None) -> str | None:
    """The segmentation the main sections use: ``requested``, else the one with most labels.

    Examples
    --------
    >>> import pandas as pd
    >>> primary_segmentation(pd.DataFrame({"segmentation": ["given", "sentences", "given"]}))
    'given'
    """
    if "segmentation" not in frame.columns:
        if requested is not None:
            raise ValueError(
                f"segmentation {requested!r} requested but labels have no 'segmentation' column"
            )
        return None
    counts = frame["segmentation"].value_counts()
    if requested is not None:
        if requested not in counts.index:
            raise ValueError(
                f"segmentation {requested!r} not in labels; have "
                f"{', '.join(map(repr, sorted(counts.index)))}"
            )
        return requested
    if counts.empty:  # no labels yet (a new audit): no segmentation to choose
        return None
    # The segmentation with the most labels; ties go to the first name.
    return str(sorted(counts.index, key=lambda s: (-counts[s], s))[0])


def level_text(confidence_level: float) -> str:
    """A confidence level as people write it: 0.95 → "95%", 0.975 → "97.5%"."""
    if round(confidence_level * 100, 9) == int(round(confidence_level * 100, 9)):
        return f"{confidence_level:.0%}"
    return f"{confidence_level * 100:g}%"


def _methods(
    *,
    resamples: int,
    confidence_level: float,
    abstain_rule: str,
    ece_bins: int,
    segmentation: str | None,
    segmentations: list[str],
) -> dict[str, str]:
    level = level_text(confidence_level)
    abstain_text = {
        "exclude": "errors / (steps labelled − abstentions): abstentions are left out",
        "error": "(errors + abstentions) / steps labelled: abstentions count as errors",
        "correct": "errors / steps labelled: abstentions count as correct",
    }[abstain_rule]
    return {
        "error_rate": (
            f"Step error rate of an evaluator in a condition = {abstain_text}. Every row also "
            "gives the abstention rate and the rate with abstentions counted as errors and as "
            "correct. A pooled row per evaluator kind with several evaluators (evaluator = the "
            "kind) pools all their labels."
        ),
        "abstain_rule": abstain_rule,
        "confidence_level": f"{level} two-sided intervals throughout.",
        "bootstrap": (
            f"Nonparametric cluster bootstrap over traces with {resamples} resamples, drawn "
            "independently within each condition (traces are nested in conditions) from the "
            "report's seeded random generator; percentile intervals. Each resample draws as "
            "many traces as the condition has, with replacement; all evaluators share the "
            "same draws, so differences and ordering agreement are paired (joint bootstrap)."
        ),
        "wilson": (
            "Wilson score interval without continuity correction, treating steps as "
            "independent; shown as the naive comparison (it is too narrow when steps of a "
            "trace are correlated)."
        ),
        "small_samples": (
            f"Small-sample rule: when a condition has fewer than {SMALL_SAMPLE_TRACES} "
            "traces with countable steps, or the bootstrap degenerates (no errors, only "
            "errors, or a zero-width interval), the interval of an error rate is Wilson's at "
            "the effective sample size n / design effect instead of the percentile bootstrap "
            "(which covers only 0.59–0.90 at 5–30 steps per arm). The design effect is the "
            "bootstrap variance × k/(k − 1) for k traces over p(1 − p)/n, at least 1; with "
            "no errors or only errors it is steps / traces, the largest one the traces allow. "
            "Simulated coverage at 5, 10, 20 and 30 steps per arm: 0.98, 0.96, 0.96, 0.93 "
            "(conservative at 5, where most arms have no errors). interval_method names the "
            "interval used; bootstrap_low/high keep the bootstrap's. A difference with a "
            "small arm takes Newcombe's hybrid score interval built from the two arms' "
            "intervals (simulated coverage 0.96). Every bound lies in [0, 1] (differences in "
            "[−1, 1]); no interval has zero width unless the sample is large and the rate "
            "is neither 0 nor 1."
        ),
        "orderings": (
            "Conditions ranked by error rate, lowest first (ties by name). Pairwise "
            "differences a − b with cluster-bootstrap percentile intervals; the two-proportion "
            "z test (pooled) and Fisher's exact test (two-sided) treat steps as independent."
        ),
        "ordering_agreement": (
            "Kendall's tau-b between two evaluators' error rates over their common "
            "conditions; same_ordering when every pairwise difference has the same sign "
            "(zero only matches zero); p_same_ordering = share of bootstrap resamples in "
            "which the orderings agree. Pooled kinds are not paired with their own members."
        ),
        "agreement": (
            "Step-level agreement reported twice: abstain as a third category, and abstain "
            "as missing (agreement on jointly non-abstained steps). Cohen's kappa with its "
            "asymptotic interval, Gwet's AC1, percent agreement, confusion matrices per pair; "
            "Fleiss' kappa, Krippendorff's alpha (nominal) and AC1 among all evaluators (over "
            "the steps labelled by two or more evaluators) and among the evaluators of each "
            "kind that has several (over all their steps)."
        ),
        "answer_metrics": (
            "Answer correct = answer equals gold after trimming whitespace, ignoring case "
            "(Unicode case folding; the rule of the import); missing answers are incorrect. "
            "Accuracy over all traces (every sample counts): audited traces and answer-only "
            "samples alike. n = samples the answer metrics used; n_audited = of them, traces "
            "audited step by step; audited_sample_indices = their sample indices."
        ),
        "answer_metrics_by_control": (
            "The answer metrics again within each dataset and each trace type, per condition "
            "(SC@k voting among the samples of the group)."
        ),
        "self_consistency": (
            "sc_at_k: per (condition, question) the k sampled answers vote; the most frequent "
            "answer wins; a tie goes to the tied answer first seen at the lowest sample_index; "
            "missing answers do not vote. k_min/k_max give the sample counts."
        ),
        "ece": (
            f"Expected calibration error with {ece_bins} equal-width confidence bins over "
            f"[0, 1] (bin b holds [b/{ece_bins}, (b+1)/{ece_bins}), the last bin also holds "
            "1.0); traces without a confidence are left out."
        ),
        "ece_bins": str(ece_bins),
        "brier": "Binary Brier score: mean of (confidence of the given answer − correct)².",
        "trace_vs_answer": (
            "Reference-labelled (verifiable) traces only: a trace is correct when none of its "
            "steps is an error (abstentions are not errors); crossed with answer correctness."
        ),
        "judge_by_condition": (
            "Judge vs experts per condition with error as the positive class: expert "
            "reference = majority of non-abstaining experts per step (ties dropped); judge "
            "abstentions dropped. Wilson intervals. A judge is flagged when sensitivity or "
            "specificity differs across conditions: chi-square test of homogeneity (Fisher's "
            "exact test for two conditions), p < 0.05."
        ),
        "ppi": (
            "Prediction-powered inference (Angelopoulos et al. 2023), lambda = 1: mean of the "
            "judge's prediction Y_hat over every judged (non-abstained) step + mean of w·(Y − "
            "Y_hat) over expert-labelled steps, Y_hat = the judge's probability that the step "
            "is an error where it stated one (the share of its samples saying so, or its token "
            "probability; 'prediction_probability_share' says for how many steps), else its "
            "0/1 verdict; Y = share of non-abstaining experts calling "
            "the step an error, w = Horvitz–Thompson weight 1/inclusion_probability "
            "(or the weight column; uniform when absent) normalised to mean 1. Normal "
            "interval; variance by linearisation per trace (cluster-robust, Hájek-weighted "
            "rectifier, covariance of the two terms kept). Differences between conditions "
            "add the two variances. Judge-only = mean of the judge's 0/1 verdict; expert-only = "
            "weighted (Hájek) mean of Y over the labelled steps. "
            "PPI++ (Angelopoulos, Duchi & Zrnic 2023) beside it: lambda·mean(Y_hat over "
            "judged) + mean(w·(Y − lambda·Y_hat)) over labelled, with lambda in [0, 1] chosen "
            "to minimise the same cluster-robust, weighted variance (a parabola in lambda, so "
            "the exact minimiser, clipped to [0, 1]); lambda = 0 is the expert-only estimate, "
            "so PPI++ is never wider than expert-only. n_effective = expert labels the "
            "expert-only estimate would need for PPI++'s precision (labelled × var(expert-"
            "only) / var(PPI++)). Estimates and bounds are clipped to [0, 1] (differences to "
            "[−1, 1]; the difference of clipped estimates is taken before clipping); "
            "'clipped' says when that moved a number. With fewer than "
            f"{PPI_MIN_LABELS} expert labels, fewer than {PPI_MIN_TRACES} labelled traces or "
            "a zero variance PPI's interval is widened to include the expert-only one and "
            "PPI++ is the expert-only estimate (lambda = 0); with fewer than "
            f"{SMALL_SAMPLE_TRACES} labelled traces both use t with k − 1 df and the CR1 "
            "factor k/(k − 1), and PPI++ keeps expert-only's interval when its own is wider. "
            "Expert-only and judge-only intervals follow the small-sample rule of the error "
            "rates. The 'method' field of each estimate names the rule that applied."
        ),
        "findings": (
            f"Findings ({FINDING_RULES_VERSION}), each evaluator pair over its common "
            "conditions, a difference being significant when its interval excludes 0: "
            + "; ".join(
                f"'{name.replace('_', ' ')}' when {rule}" for name, rule in FINDING_RULES.items()
            )
            + ". The expert is compared with each judge (every pair when there is no expert "
            "or no judge)."
        ),
        "controls": (
            "Controls: the labels are split by final-answer correctness (the trace's answer "
            "against gold, the answer rule below), dataset (the question's benchmark), trace "
            "type, step position (first / middle / last third of the trace: rank r of L "
            "steps falls in third floor(3r / L)) and segmentation (every segmentation; the "
            "others within the main one); a control needs two levels with labels. Within "
            "each level the error rates (cluster bootstrap over traces, small-sample rule), "
            "the pairwise differences and the ordering agreement are computed again and the "
            f"findings rules give the level's verdict. min(resamples, {CONTROL_MAX_RESAMPLES}) "
            "resamples of each condition's traces are drawn once and shared by every control "
            "and level (a level's traces are resampled as part of their condition, so their "
            "number varies between resamples); the summary says whether each "
            "evaluator's ordering in the level is the same as over all labels. Style-blind vs "
            "raw judge: when judges of both kinds ran, the findings rules compare their "
            "orderings."
        ),
        "hedging_language": (
            f"Hedging language ({HEDGING_LEXICON_VERSION}): share of steps whose blinded text "
            "contains a term of the lexicon (whole words, case-insensitive; the list is in "
            "hedging_language.lexicon; the normaliser keeps hedges), per condition, with the "
            "cluster bootstrap over traces and the small-sample rule. It involves no "
            "evaluator. Over the steps the blinding check reads (all of the main "
            "segmentation, or whole traces sampled up to the classifier's limit)."
        ),
        "segmentation": (
            "Main sections use segmentation "
            f"{segmentation!r}; robustness repeats the condition gaps under each of "
            f"{', '.join(map(repr, segmentations))}."
            if segmentation is not None
            else "Labels carry one segmentation."
        ),
        "likert": (
            "Per trace type and item: mean, median, bootstrap interval; Kruskal–Wallis across "
            "trace types per item; pairwise Mann–Whitney with Holm correction."
        ),
        "blinding_classifier": (
            "Can the condition be predicted from the blinded step text? A TF-IDF logistic "
            "regression (word 1-2-grams, character 3-5-grams) is cross-validated with "
            "StratifiedGroupKFold grouped by question (every trace of a question, under every "
            "condition, in one fold; by trace when questions are unknown — grouped_by says "
            "which; 5 folds); the ROC AUC (one-vs-rest macro average for more than two "
            "conditions) is computed on each held-out fold and averaged. Interval: percentile "
            "bootstrap over the groups with "
            f"{min(resamples, CLASSIFIER_MAX_RESAMPLES)} resamples. 0.5 = the text carries no "
            "trace of the condition (near 0.5 is good); 1 = the text gives the condition away. "
            f"At most {CLASSIFIER_MAX_TEXTS:,} steps of the main segmentation: with more, whole "
            "traces are drawn in a random order from the report's seed while their steps fit. "
            "An AUC clearly below 0.5 is no leak: cross-validation on few traces produces it."
        ),
        "blinding_index": (
            "Clinicians' answers to the blinding question ('which model wrote this?'), per "
            "true condition: counts per answer and, when every answer is a don't-know or names "
            "a condition, Bang's blinding index BI = (correct − incorrect) / answers with its "
            "normal interval (0 = guessing at random between two arms, 1 = unblinded, −1 = "
            "opposite guessing; bi_if_random is the value random guessing gives with more "
            "arms) and James' index over all arms (1 = all don't know, 0.5 = random, 0 = "
            "unblinded). Hidden repeats and gold items are left out."
        ),
    }


def report_compute(
    labels: pd.DataFrame,
    answers: pd.DataFrame | None = None,
    ratings: pd.DataFrame | None = None,
    *,
    rng: np.random.Generator,
    resamples: int = 2000,
    ece_bins: int = 10,
    abstain_rule: AbstainRule = "exclude",
    confidence_level: float = 0.95,
    segmentation: str | None = None,
    repeats: pd.DataFrame | None = None,
    texts: pd.DataFrame | None = None,
    guesses: pd.DataFrame | None = None,
    hedging_terms: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Compute the whole agreement report as a JSON-serialisable dict.

    Parameters
    ----------
    labels : pandas.DataFrame
        Labels long format (:data:`auditapp.agreement.formats.LABEL_COLUMNS`).
    answers : pandas.DataFrame, optional
        Answers long format; without it ``answer_metrics`` and ``trace_vs_answer`` are empty.
    ratings : pandas.DataFrame, optional
        Ratings long format; without it ``likert`` is None.
    rng : numpy.random.Generator, keyword-only
        The only source of randomness; seed it to make the report reproducible.
    resamples : int, keyword-only
        Bootstrap resamples (default 2000).
    ece_bins : int, keyword-only
        ECE bins (default 10).
    abstain_rule : {"exclude", "error", "correct"}, keyword-only
        How ``error_rate`` treats abstentions (default: left out).
    confidence_level : float, keyword-only
        Level of every interval (default 0.95).
    segmentation : str, optional, keyword-only
        The segmentation the main sections use when labels carry several (default: the one
        with the most labels); ``robustness`` always covers all of them.
    repeats : pandas.DataFrame, optional, keyword-only
        Hidden repeats (``rater, step_id, first, second``) for
        ``robustness["hidden_repeats"]``; None leaves that entry None.
    texts : pandas.DataFrame, optional, keyword-only
        Blinded step texts (``trace_id, condition, text``) for ``blinding["classifier"]``;
        see :func:`auditapp.agreement.blinding.blinding_summary`.
    guesses : pandas.DataFrame, optional, keyword-only
        Answers to the blinding question (``condition, option, guess``) for
        ``blinding["index"]``.
    hedging_terms : tuple of str, keyword-only
        The audit's additions to the hedging lexicon (``hedging_language`` reads ``texts``).

    Returns
    -------
    dict
        Exactly the keys of :data:`REPORT_KEYS`; see ``docs/report.md``.

    Raises
    ------
    ValueError
        On bad options or a bad value in any table (naming row and column).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
    if not isinstance(resamples, int | np.integer) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not isinstance(ece_bins, int | np.integer) or ece_bins < 1:
        raise ValueError(f"ece_bins must be a positive integer, got {ece_bins!r}")
    if abstain_rule not in ABSTAIN_RULES:
        raise ValueError(f"abstain_rule must be one of {ABSTAIN_RULES}, got {abstain_rule!r}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")

    all_labels = labels_validate(labels)
    answer_frame = answers_validate(answers) if answers is not None else None
    rating_frame = ratings_validate(ratings) if ratings is not None else None
    primary = primary_segmentation(all_labels, segmentation)
    segmentations = (
        sorted(all_labels["segmentation"].unique().tolist()) if primary is not None else []
    )
    main = all_labels
    if primary is not None and len(segmentations) > 1:
        # Only then: indexing a million-row frame by a mask that is all True copies it.
        main = all_labels[all_labels["segmentation"] == primary]

    rates = error_rates(
        main,
        rng=rng,
        resamples=resamples,
        confidence_level=confidence_level,
        abstain=abstain_rule,
        validate=False,
    )
    ordering_rows = [
        {
            "evaluator": o.evaluator,
            "evaluator_kind": o.evaluator_kind,
            "ranking": list(o.ranking),
            "rates": o.rates,
            "differences": _difference_rows(o.differences),
        }
        for o in orderings(rates)
    ]
    agreement_rows = []
    for a, b in _ordering_pairs(rates):
        agreement = ordering_agreement(rates, a, b)
        agreement_rows.append(
            {
                "a": agreement.a,
                "b": agreement.b,
                "conditions": list(agreement.conditions),
                "kendall_tau": agreement.kendall_tau,
                "same_ordering": agreement.same_ordering,
                "p_same_ordering": agreement.p_same_ordering,
                "n_resamples": agreement.n_resamples,
            }
        )

    pairwise_rows: list[dict[str, Any]] = []
    multi_rows: list[dict[str, Any]] = []
    if not main.empty:
        # Only steps with two or more labels can agree or disagree; dropping the rest first
        # keeps 1M single-judge steps out of the pivots (pairwise results are unchanged).
        step_code = pd.factorize(main["step_id"])[0]
        shared = main[np.bincount(step_code)[step_code] >= 2]
        for abstain in ("category", "missing"):
            pairwise_rows.extend(
                pairwise_agreement(shared, abstain=abstain, confidence_level=confidence_level)
            )
        for abstain in ("category", "missing"):
            multi_rows.append(
                dict(multi_rater_agreement(shared, abstain=abstain, evaluator_kind=None))
            )
        kinds_with_several = [
            kind
            for kind, n in main.groupby("evaluator_kind")["evaluator"].nunique().items()
            if n >= 2
        ]
        for kind in sorted(kinds_with_several):
            of_kind = main[main["evaluator_kind"] == kind]
            for abstain in ("category", "missing"):
                multi_rows.append(
                    dict(multi_rater_agreement(of_kind, abstain=abstain, evaluator_kind=kind))
                )

    answer_rows: list[Any] = []
    answer_control_rows: list[Any] = []
    trace_answer_rows: list[Any] = []
    if answer_frame is not None and not answer_frame.empty:
        answer_rows = list(answer_metrics(answer_frame, bins=ece_bins, validate=False))
        answer_control_rows = answer_metrics_by_control(answer_frame, bins=ece_bins, validate=False)
        trace_answer_rows = list(trace_vs_answer(main, answer_frame, validate=False))

    likert = None
    if rating_frame is not None and not rating_frame.empty:
        likert = likert_summary(rating_frame, confidence_level=confidence_level)

    ppi_rows, ppi_differences = ppi_error_rates(
        main, confidence_level=confidence_level, validate=False
    )
    ppi = None
    if ppi_rows:
        ppi = {
            "rows": [
                {
                    "judge": r.judge,
                    "condition": r.condition,
                    "n_judged": r.n_judged,
                    "n_labelled": r.n_labelled,
                    **_flat_estimate("", r.ppi),
                    **_flat_estimate("ppi_plus_plus", r.ppi_plus_plus),
                    "lambda": r.ppi_plus_plus.lam,
                    "n_effective": r.n_effective,
                    "prediction_probability_share": r.prediction_probability_share,
                    **_flat_estimate("judge_only", r.judge_only),
                    **_flat_estimate("expert_only", r.expert_only),
                }
                for r in ppi_rows
            ],
            "differences": [
                {
                    "judge": d.judge,
                    "condition_a": d.condition_a,
                    "condition_b": d.condition_b,
                    **_flat_estimate("", d.ppi),
                    **_flat_estimate("ppi_plus_plus", d.ppi_plus_plus),
                    **_flat_estimate("judge_only", d.judge_only),
                    **_flat_estimate("expert_only", d.expert_only),
                }
                for d in ppi_differences
            ],
        }

    bias = judge_by_condition(main, confidence_level=confidence_level, validate=False)
    judge_section = (
        {"rows": bias.rows, "homogeneity": bias.homogeneity, "reference": bias.reference}
        if bias.rows
        else None
    )

    if len(segmentations) > 1:
        gaps = segmentation_gaps(
            all_labels,
            rng=rng,
            resamples=resamples,
            confidence_level=confidence_level,
            abstain=abstain_rule,
            validate=False,
        )
    else:
        # One segmentation: its gaps are the main orderings' differences; no second bootstrap.
        gaps = gaps_from_rates(rates, segmentation=primary or "default")
    robustness = {
        "segmentation_gaps": gaps,
        "hidden_repeats": (
            hidden_repeat_consistency(repeats, confidence_level=confidence_level)
            if repeats is not None and not repeats.empty
            else None
        ),
    }

    controls = None
    if not main.empty:
        # Segmentation is a control over every segmentation; the others within the main one.
        control_frame = main
        if len(segmentations) > 1:
            control_frame = main.assign(segmentation=None)
            control_frame = pd.concat([control_frame, _segmentation_only(all_labels)])
        controls = control_analyses(
            control_frame,
            overall=_jsonable(ordering_rows),
            rng=rng,
            resamples=resamples,
            confidence_level=confidence_level,
            abstain=abstain_rule,
        )
        flags = _style_blind_flags(main)
        controls["style_blind"] = style_blind_findings(
            _jsonable(ordering_rows), agreement_rows, flags
        )
        controls["style_blind_judges"] = flags
        if not controls["controls"] and not controls["style_blind"]:
            controls = None

    # After every other section's draws: with or without texts, the other numbers stay.
    hedging = hedging_language_rates(
        texts if texts is not None else pd.DataFrame(),
        rng=rng,
        resamples=resamples,
        confidence_level=confidence_level,
        extra_terms=hedging_terms,
    )

    # Last, so that the sections above draw the same numbers with or without blinding input.
    conditions = sorted(main["condition"].unique().tolist()) if not main.empty else None
    blinding = blinding_summary(
        texts,
        guesses,
        rng=rng,
        resamples=resamples,
        confidence_level=confidence_level,
        conditions=conditions,
    )

    report = {
        "findings": None,
        "error_rates": _rate_rows(rates),
        "orderings": ordering_rows,
        "ordering_agreement": agreement_rows,
        "pairwise_agreement": pairwise_rows,
        "multi_rater": multi_rows,
        "answer_metrics": answer_rows,
        "answer_metrics_by_control": answer_control_rows,
        "trace_vs_answer": trace_answer_rows,
        "likert": likert,
        "ppi": ppi,
        "judge_by_condition": judge_section,
        "robustness": robustness,
        "controls": controls,
        "hedging_language": hedging,
        "blinding": blinding,
        "methods": _methods(
            resamples=resamples,
            confidence_level=confidence_level,
            abstain_rule=abstain_rule,
            ece_bins=ece_bins,
            segmentation=primary,
            segmentations=segmentations,
        ),
    }
    if hedging is not None and hedging["lexicon"]["extra_terms"]:
        report["methods"]["hedging_language"] += (
            " The audit's own additions, counted as the lexicon's terms are: "
            + ", ".join(repr(t) for t in hedging["lexicon"]["extra_terms"])
            + "."
        )
    report = _jsonable(report)
    report["findings"] = {
        "rules_version": FINDING_RULES_VERSION,
        "rules": FINDING_RULES,
        "items": ordering_findings(report["orderings"], report["ordering_agreement"]),
    }
    return report
