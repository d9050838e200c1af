"""The leak gate: can the arm be read from what a batch's annotators will see?

Before a batch is assigned, the report's blinding classifier
(:func:`auditapp.agreement.blinding.blinding_check`) is run on each step item exactly as the
clinician page shows it — the preceding steps the audit's context window lets through, the
blinded step and, when the audit shows it, the blinded final answer — with the arms being the
items' conditions (named by blind code). In the trace modes ("trace", "first_error") the
annotator sees whole traces, so the classifier reads one text per trace: all its blinded steps
in order (and the final answer when shown), its length and style included. Assigning a batch
whose AUC interval lies wholly above the audit's ``leak_threshold`` needs an explicit, logged
confirmation (``batch_assign``).
"""

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

from annotations.models import TRACE_MODES, Audit, Batch, Step
from auditapp.agreement.blinding import blinding_check

# Fewer items than this in the smallest arm: the check reports no AUC and never blocks. On so
# few texts the group bootstrap's interval is far too narrow to trust: on the demo audit's
# 24-item batches (8 per arm) random secrets gave lower bounds from 0.27 to 0.66, while all its
# 264 steps give 0.46-0.55 (chance).
MIN_PER_ARM = 30
TOP_FEATURES = 10
# 500 resamples: the bound moves by < 0.005 against 1000 on the styled fixture and the whole
# check on 2,000 items stays near 1 s (tests/annotations/services/test_leak_gate.py prints it).
RESAMPLES = 500


@dataclass(frozen=True)
class LeakFeature:
    ngram: str
    count: int  # items of this arm whose shown text contains the n-gram
    other: int  # items of the other arms that contain it


@dataclass(frozen=True)
class LeakCheck:
    n_items: int
    auc: float  # nan when there are too few items or arms to check
    ci_low: float
    ci_high: float
    threshold: float
    above: bool  # the interval's lower bound lies above the threshold
    top_features: dict[str, tuple[LeakFeature, ...]]  # blind code → what gives the arm away

    @property
    def checked(self) -> bool:
        return not math.isnan(self.auc)

    def as_dict(self) -> dict:
        """JSON-ready (nan → None)."""
        data = asdict(self)
        for key in ("auc", "ci_low", "ci_high"):
            if math.isnan(data[key]):
                data[key] = None
        return data


def shown_texts(*, batch: Batch) -> list[tuple[str, str, int]]:
    """(text as shown, blind code, question id) for each step item of the batch.

    The same fields the clinician page builds from (annotations/selectors/blinded.py ``_blind``):
    the last ``context_window`` preceding blinded steps when the audit shows context, the
    blinded step, and ``Trace.blinded_final_answer`` when the audit shows the final answer.
    Two queries whatever the batch's size.
    """
    audit = batch.audit
    if batch.mode in TRACE_MODES:
        return _shown_traces(batch)
    rows = list(
        batch.items.filter(step__isnull=False)
        .order_by("pk")
        .values_list(
            "step__trace_id",
            "step__index",
            "step__blinded_text",
            "step__trace__blinded_final_answer",
            "step__trace__condition__blind_code",
            "step__trace__question_id",
        )
    )
    with_context = audit.context_mode == Audit.ContextMode.PRECEDING
    window = audit.context_window
    preceding: dict[int, dict[int, str]] = defaultdict(dict)
    if with_context and rows:
        traces = {r[0] for r in rows}
        for trace_id, index, text in Step.objects.filter(
            trace_id__in=traces, segmentation=batch.segmentation
        ).values_list("trace_id", "index", "blinded_text"):
            preceding[trace_id][index] = text
    out = []
    for trace_id, index, step, final, code, question in rows:
        parts: list[str] = []
        if with_context and index:
            start = 0 if window is None else max(0, index - window)
            steps = preceding[trace_id]
            parts.extend(steps[i] for i in range(start, index) if i in steps)
        parts.append(step or "")
        if audit.show_final_answer:
            parts.append(final or "")
        out.append(("\n".join(parts), code, question))
    return out


def _shown_traces(batch: Batch) -> list[tuple[str, str, int]]:
    """Trace modes: (whole trace as shown, blind code, question id) per trace of the batch —
    the page's ``trace_get_blinded``: every blinded step in order, then the blinded final
    answer when the audit shows it. One query."""
    rows = (
        batch.items.filter(step__isnull=False)
        .order_by("step__trace_id", "step__index")
        .values_list(
            "step__trace_id",
            "step__blinded_text",
            "step__trace__blinded_final_answer",
            "step__trace__condition__blind_code",
            "step__trace__question_id",
        )
    )
    traces: dict[int, list] = {}
    for trace_id, text, final, code, question in rows:
        entry = traces.setdefault(trace_id, [[], final, code, question])
        entry[0].append(text or "")
    out = []
    for parts, final, code, question in traces.values():
        if batch.audit.show_final_answer:
            parts = [*parts, final or ""]
        out.append(("\n".join(parts), code, question))
    return out


def _top_features(texts: list[str], arms: list[str]) -> dict[str, tuple[LeakFeature, ...]]:
    """Per arm, the character n-grams (3-5, within words, as the classifier uses) whose share of
    the arm's items most exceeds their share of the other arms' items (smoothed log ratio).

    The classifier hashes its features, so its coefficients name no n-gram: counts it is.
    """
    vectorizer = CountVectorizer(analyzer="char_wb", ngram_range=(3, 5), binary=True, min_df=2)
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # no n-gram occurs twice
        return {arm: () for arm in sorted(set(arms))}
    names = vectorizer.get_feature_names_out()
    labels = np.asarray(arms)
    result = {}
    for arm in sorted(set(arms)):
        mine = labels == arm
        count = np.asarray(matrix[mine].sum(axis=0)).ravel()
        other = np.asarray(matrix[~mine].sum(axis=0)).ravel()
        score = np.log((count + 1) / (mine.sum() + 2)) - np.log((other + 1) / ((~mine).sum() + 2))
        best = [i for i in np.argsort(-score, kind="stable")[:TOP_FEATURES] if score[i] > 0]
        result[arm] = tuple(
            LeakFeature(ngram=str(names[i]), count=int(count[i]), other=int(other[i])) for i in best
        )
    return result


def batch_leak_check(*, batch: Batch) -> LeakCheck:
    """The blinding classifier on what the batch's annotators will see (see module doc)."""
    audit = batch.audit
    threshold = float(audit.leak_threshold)
    shown = shown_texts(batch=batch)
    texts = [t for t, _, _ in shown]
    arms = [a for _, a, _ in shown]
    groups = [q for _, _, q in shown]
    n = len(shown)
    nan = math.nan
    per_arm = Counter(arms)
    if len(per_arm) < 2 or min(per_arm.values()) < MIN_PER_ARM or len(set(groups)) < 5:
        return LeakCheck(n, nan, nan, nan, threshold, False, {a: () for a in sorted(set(arms))})
    # Reproducible per batch, and its own stream: the same batch always shows the same figures.
    digest = hashlib.sha256(f"{audit.blinding_seed}:batch:{batch.seed}:leak".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    check = blinding_check(texts, arms, groups=groups, rng=rng, resamples=RESAMPLES)
    return LeakCheck(
        n_items=n,
        auc=check.auc,
        ci_low=check.ci_low,
        ci_high=check.ci_high,
        threshold=threshold,
        above=bool(check.ci_low > threshold),
        top_features=_top_features(texts, arms),
    )
