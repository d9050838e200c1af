"""Batches: stratified samples of steps (or traces), assigned to annotators.

Every random choice flows from ``audit.blinding_seed`` through named streams
(``batch:<seed>:…``), so a batch is reproducible by whoever holds the audit's secret and
unpredictable for everyone else.
"""

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from annotations.models import (
    TRACE_MODES,
    Assignment,
    AssignmentEvent,
    AssignmentItem,
    Audit,
    Batch,
    BatchItem,
    Label,
    LabellingMode,
    Step,
    Trace,
    TraceRating,
)
from annotations.selectors.access import item_marked
from annotations.services.active_design import draw_active, uncertainty_source_get
from annotations.services.leak_gate import batch_leak_check
from annotations.services.randomness import public_ids, seeded_generator, seeded_random
from annotations.services.sampling import (
    Allocation,
    Stratum,
    StratumFunction,
    allocate,
    draw,
    largest_remainder,
    strata_of,
)
from auditapp.agreement.active import DEFAULT_FLOOR, uncertainty_score
from auditapp.agreement.stratified import neyman_allocation
from auditapp.exceptions import ApplicationError, ConflictError

STRATIFIERS = ("answer_correct", "trace_type", "context_depth")


def batch_mode_resolve(*, audit: Audit, mode: str = "") -> str:
    """The labelling mode a new batch is drawn for: ``mode`` when given, else the audit's.
    Trace-rating audits rate whole traces whatever the mode: theirs is always "steps"."""
    if mode and mode not in LabellingMode.values:
        raise ApplicationError(
            f"Unknown labelling mode {mode!r}; use {', '.join(LabellingMode.values)}.",
            code="mode",
        )
    if audit.kind == Audit.Kind.TRACE_RATINGS:
        if mode and mode != LabellingMode.STEPS:
            raise ApplicationError(
                "Trace-rating audits have no labelling mode: they rate whole traces.",
                code="mode",
            )
        return LabellingMode.STEPS
    return mode or audit.labelling_mode


def context_depth(audit: Audit, index: int) -> str:
    """What an item shows of its step's place under the audit's settings (0-based index):
    its number when step numbers are shown or the whole context is; with a window of K, the
    first K + 1 positions and "later"; nothing with the step alone. Stratifying by it with
    ``balanced`` allocation gives every arm the same mix, so the mix cannot tell the arm."""
    if audit.context_mode == Audit.ContextMode.STEP_ONLY and not audit.show_step_numbers:
        return "any"
    window = audit.context_window
    if audit.show_step_numbers or window is None or index <= window:
        return str(index + 1)
    return f"{window + 2}+"


@dataclass(frozen=True)
class BatchPlan:
    """What ``batch_build`` would draw: the design, before anything is written."""

    unit: str  # "step" or "trace"
    segmentation: str
    mode: str
    size: int
    seed: str
    allocation: str
    stratify_by: tuple[str, ...]
    population: int
    excluded: int
    strata: tuple[Stratum, ...]
    gold: int
    gold_available: int
    drawn: Mapping[str, Sequence[int]] = field(repr=False, default_factory=dict)
    gold_units: Sequence[tuple[int, str]] = field(repr=False, default=())
    # The active design: each drawn unit's own inclusion probability, and how it was chosen.
    probabilities: Mapping[int, float] = field(repr=False, default_factory=dict)
    sampling: Mapping[str, object] = field(default_factory=lambda: {"design": "stratified"})

    @property
    def sample_size(self) -> int:
        return sum(s.sample for s in self.strata)

    def design(self) -> dict:
        return {
            "unit": self.unit,
            "mode": self.mode,
            "segmentation": self.segmentation,
            "size": self.sample_size,
            "requested_size": self.size,
            "seed": self.seed,
            "allocation": self.allocation,
            "stratify_by": ["condition", *self.stratify_by],
            "population": self.population,
            "excluded_already_batched": self.excluded,
            "strata": [s.as_dict() for s in self.strata],
            "gold": self.gold,
            "sampling": dict(self.sampling),
        }


DESIGNS = ("stratified", "active", "stratified-ppi")


def _judge_verdict(p: float | None) -> str:
    if p is None or p == 0.5:
        return "unsure"
    return "error" if p > 0.5 else "correct"


def _neyman_strata(
    populations: Mapping[str, int],
    conditions: Mapping[str, str],
    units_by_stratum: Mapping[str, Sequence[int]],
    judge_p: Mapping[int, float],
    size: int,
) -> tuple[list[Stratum], dict[str, float]]:
    """Equal shares per condition, Neyman within it (``auditapp.agreement.stratified``):
    S_h = sqrt(p̄(1 − p̄)) of the judge's mean error probability in the stratum."""
    sds = {}
    for key, units in units_by_stratum.items():
        p = float(np.mean([judge_p.get(pk, 0.5) for pk in units])) if units else 0.5
        sds[key] = float(np.sqrt(p * (1 - p)))
    by_condition: dict[str, int] = defaultdict(int)
    for key, n in populations.items():
        by_condition[conditions[key]] += n
    per_condition = largest_remainder(dict.fromkeys(by_condition, 1.0), size, by_condition)
    sizes: dict[str, int] = {}
    for condition, n_condition in per_condition.items():
        keys = {k: populations[k] for k in populations if conditions[k] == condition}
        sizes.update(neyman_allocation(keys, sds, size=n_condition))
    strata = strata_of(populations, conditions, sizes)
    return strata, {k: round(v, 4) for k, v in sorted(sds.items())}


def _uncertainty_strata(
    populations: Mapping[str, int],
    conditions: Mapping[str, str],
    units_by_stratum: Mapping[str, Sequence[int]],
    judge_p: Mapping[int, float],
    size: int,
) -> tuple[list[Stratum], dict[str, float]]:
    """The whole budget ∝ N_h × mean sqrt(p(1 − p)) over each stratum's units: under the
    active design a label's variance in stratum h is about (E sd_h)², so this is the
    Neyman allocation across strata (and arms) that the judge alone can make, before any
    expert label. Units without a probability count as 1/2, as when they are drawn."""
    spreads = {
        key: float(
            uncertainty_score(np.array([judge_p.get(pk, 0.5) for pk in units])).mean()
            if units
            else 0.5
        )
        for key, units in units_by_stratum.items()
    }
    sizes = neyman_allocation(populations, spreads, size=size)
    strata = strata_of(populations, conditions, sizes)
    return strata, {k: round(v, 4) for k, v in sorted(spreads.items())}


def _stratum_key(blind_code: str, extras: Sequence[tuple[str, str]]) -> str:
    return " | ".join([blind_code, *(f"{name}={value}" for name, value in extras)])


def _answer_label(value: bool | None) -> str:
    return {True: "correct", False: "wrong", None: "unknown"}[value]


def batch_preview(
    *,
    audit: Audit,
    size: int,
    segmentation: str = "",
    seed: str = "",
    stratify_by: Sequence[str] = (),
    stratum_functions: Mapping[str, StratumFunction] | None = None,
    allocation: str = Allocation.EQUAL,
    include_batched: bool = False,
    gold: int = 0,
    design: str = "stratified",
    uncertainty: str = "",
    floor: float = DEFAULT_FLOOR,
    mode: str = "",
) -> BatchPlan:
    """Plan a stratified sample: always by condition, optionally by the trace's answer
    correctness, its trace type, or any ``stratum_functions`` (e.g. a judge run's verdict).

    ``mode`` (default: the audit's ``labelling_mode``): in the trace modes ("trace",
    "first_error") the units drawn are whole traces with steps under ``segmentation``; the
    batch then holds every step of each drawn trace, each carrying its trace's inclusion
    probability. Gold items, the active design and depth strata are step-mode only.

    ``design="active"``: within each stratum, units are drawn with probabilities that follow
    the judge's uncertainty from the ``uncertainty`` source (e.g. ``"judge-runs:12"``), at
    least ``floor`` times the stratum's uniform probability (``annotations.services.
    active_design``); each unit's probability is recorded."""
    if design not in DESIGNS:
        raise ApplicationError(
            f"Unknown design {design!r}; use {', '.join(DESIGNS)}.", code="design"
        )
    if design != "stratified" and not uncertainty:
        raise ApplicationError(
            f"The {design} design needs an uncertainty source, e.g. judge-runs:<run id>.",
            code="uncertainty",
        )
    if not 0 <= floor <= 1:
        raise ApplicationError("The floor must lie between 0 and 1.", code="floor")
    stratum_functions = dict(stratum_functions or {})
    unknown = [s for s in stratify_by if s not in STRATIFIERS and s not in stratum_functions]
    if unknown:
        raise ApplicationError(f"Unknown stratifier: {', '.join(unknown)}.", code="stratifier")
    if size < 1:
        raise ApplicationError("A batch needs at least one item.", code="size")
    if allocation not in Allocation.choices:
        raise ApplicationError(f"Unknown allocation {allocation!r}.", code="allocation")
    if allocation == Allocation.UNCERTAINTY and design != "active":
        raise ApplicationError(
            "The uncertainty allocation splits an active batch by the judge's uncertainty; "
            "use it with the active design.",
            code="allocation",
        )
    rating = audit.kind == Audit.Kind.TRACE_RATINGS
    mode = batch_mode_resolve(audit=audit, mode=mode)
    whole_traces = mode in TRACE_MODES
    if rating and "context_depth" in stratify_by:
        raise ApplicationError("Trace ratings show whole traces: no depth.", code="stratifier")
    if whole_traces and "context_depth" in stratify_by:
        raise ApplicationError(
            "A whole trace shows every step: no depth strata in trace modes.", code="stratifier"
        )
    if whole_traces and design != "stratified":
        raise ApplicationError(
            "The active design draws single steps: use the stratified design in trace modes.",
            code="design",
        )
    if whole_traces and gold:
        raise ApplicationError("Trace modes have no gold items.", code="gold")
    if not segmentation:
        raise ApplicationError("Choose a segmentation.", code="segmentation")
    if rating:
        units = Trace.objects.filter(audit=audit)
        batched = BatchItem.objects.filter(batch__audit=audit, trace=OuterRef("pk"))
        fields = ("pk", "condition__blind_code", "answer_correct", "trace_type")
    elif whole_traces:
        # Traces with steps under this segmentation; one already batched (any of its steps,
        # in any mode) is left out like a batched step.
        units = Trace.objects.filter(
            Exists(Step.objects.filter(trace=OuterRef("pk"), segmentation=segmentation)),
            audit=audit,
        )
        batched = BatchItem.objects.filter(batch__audit=audit, step__trace=OuterRef("pk"))
        fields = ("pk", "condition__blind_code", "answer_correct", "trace_type")
    else:
        units = Step.objects.filter(audit=audit, segmentation=segmentation)
        batched = BatchItem.objects.filter(batch__audit=audit, step=OuterRef("pk"))
        fields = (
            "pk",
            "trace__condition__blind_code",
            "trace__answer_correct",
            "trace__trace_type",
            "reference_verdict",
            "index",
        )
    total = units.count()
    if total == 0:
        raise ApplicationError("The audit has no units under this segmentation.", code="empty")
    if not include_batched:
        units = units.exclude(Exists(batched))
    rows = list(units.values_list(*fields))
    excluded = total - len(rows)
    judge_p: Mapping[int, float] = {}
    if design == "stratified-ppi":
        if rating:
            raise ApplicationError(
                "Stratified PPI strata are judge verdicts on steps.", code="design"
            )
        judge_probabilities, described = uncertainty_source_get(uncertainty)
        judge_p = judge_probabilities([r[0] for r in rows])
    extra_labels = {
        name: fn([r[0] for r in rows])
        for name, fn in stratum_functions.items()
        if name in stratify_by
    }

    populations: dict[str, int] = defaultdict(int)
    conditions: dict[str, str] = {}
    units_by_stratum: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        extras = []
        for name in stratify_by:
            if name == "answer_correct":
                extras.append((name, _answer_label(row[2])))
            elif name == "trace_type":
                extras.append((name, row[3] or "-"))
            elif name == "context_depth":
                extras.append((name, context_depth(audit, row[5])))
            else:
                extras.append((name, str(extra_labels[name].get(row[0], "none"))))
        if design == "stratified-ppi":
            extras.append(("judge", _judge_verdict(judge_p.get(row[0]))))
        key = _stratum_key(row[1], extras)
        populations[key] += 1
        conditions[key] = row[1]
        units_by_stratum[key].append(row[0])
    seed = seed or "0"
    probabilities: dict[int, float] = {}
    sampling: dict[str, object] = {"design": "stratified"}
    if design == "stratified-ppi":
        strata, sds = _neyman_strata(populations, conditions, units_by_stratum, judge_p, size)
        sampling = {
            "design": "stratified-ppi",
            "uncertainty": uncertainty,
            "source": described,
            "allocation": "neyman",
            "stratum_sd": sds,
            "units_with_a_verdict": sum(1 for r in rows if r[0] in judge_p),
            "rule": "strata condition × the judge's verdict (error: p > 0.5, correct: p < 0.5, "
            "unsure: p = 0.5 or no verdict); each condition an equal share, split within it "
            "∝ N_h·sqrt(p̄_h(1 − p̄_h)) (Neyman), at least 2 per stratum; a simple random "
            "sample per stratum, π = n_h / N_h",
        }
    elif design == "active":
        error_probabilities, described = uncertainty_source_get(uncertainty)
        known = error_probabilities([r[0] for r in rows])
        if allocation == Allocation.UNCERTAINTY:
            strata, spreads = _uncertainty_strata(
                populations, conditions, units_by_stratum, known, size
            )
        else:
            strata = allocate(populations, conditions, size=size, allocation=allocation)
    else:
        strata = allocate(populations, conditions, size=size, allocation=allocation)
    if design == "active":
        drawn = {}
        for stratum in strata:
            rng = seeded_generator(audit.blinding_seed, f"batch:{seed}:active:{stratum.key}")
            drawn[stratum.key], chosen = draw_active(
                units_by_stratum.get(stratum.key, ()), stratum.sample, known, rng, floor=floor
            )
            probabilities.update(chosen)
        sampling = {
            "design": "active",
            "uncertainty": uncertainty,
            "source": described,
            "floor": floor,
            "units_with_a_score": sum(1 for r in rows if r[0] in known),
            "rule": "within each stratum π ∝ sqrt(p(1 − p)) of the judge's error probability p, "
            "at least floor × the stratum's uniform probability, capped at 1; systematic PPS",
        }
        if allocation == Allocation.UNCERTAINTY:
            sampling["stratum_uncertainty"] = spreads
            sampling["rule"] += (
                "; labels per stratum ∝ N_h × the stratum's mean sqrt(p(1 − p)) (Neyman with "
                "the judge's spread, at least 2 each), so the arms the judge is least sure of "
                "get more"
            )
    else:
        drawn = draw(
            units_by_stratum,
            strata,
            lambda key: seeded_random(audit.blinding_seed, f"batch:{seed}:stratum:{key}"),
        )
    if design in ("active", "stratified-ppi"):
        # The judge's prediction, fixed before any label: the wave stopping rule's
        # prediction-powered increments need each drawn unit's and each stratum's mean
        # (reports.services.sequential_section).
        scores = known if design == "active" else judge_p
        sampling["prediction_means"] = {
            key: float(np.mean([scores.get(pk, 0.5) for pk in units]))
            for key, units in units_by_stratum.items()
        }
        sampling["predictions"] = {
            str(pk): float(scores.get(pk, 0.5)) for pks in drawn.values() for pk in pks
        }
    gold_units: list[tuple[int, str]] = []
    gold_available = 0
    if not rating and not whole_traces:
        in_sample = {pk for pks in drawn.values() for pk in pks}
        candidates = sorted((r[0], r[4]) for r in rows if r[4] and r[0] not in in_sample)
        gold_available = len(candidates)
        if gold > gold_available:
            raise ApplicationError(
                f"Only {gold_available} steps with a reference verdict are left for gold items.",
                code="gold",
                extra={"available": gold_available},
            )
        gold_units = seeded_random(audit.blinding_seed, f"batch:{seed}:gold").sample(
            candidates, gold
        )
    elif gold:
        raise ApplicationError("Trace-rating batches have no gold items.", code="gold")
    return BatchPlan(
        unit="trace" if rating or whole_traces else "step",
        segmentation=segmentation,
        mode=mode,
        size=size,
        seed=seed,
        allocation=allocation,
        stratify_by=tuple(stratify_by),
        population=total,
        excluded=excluded,
        strata=tuple(strata),
        gold=len(gold_units),
        gold_available=gold_available,
        drawn=drawn,
        gold_units=gold_units,
        probabilities=probabilities,
        sampling=sampling,
    )


@transaction.atomic
def batch_build(
    *,
    audit: Audit,
    name: str,
    size: int,
    segmentation: str = "",
    overlap: int = 1,
    seed: str = "",
    stratify_by: Sequence[str] = (),
    stratum_functions: Mapping[str, StratumFunction] | None = None,
    allocation: str = Allocation.EQUAL,
    include_batched: bool = False,
    gold: int = 0,
    hidden_repeat_share: float | None = None,
    repeat_min_gap: int | None = None,
    created_by: AbstractBaseUser | None = None,
    design: str = "stratified",
    uncertainty: str = "",
    floor: float = DEFAULT_FLOOR,
    waves: int = 1,
    mode: str = "",
) -> Batch:
    """Draw and store a batch. The same audit, seed and options draw the same units.

    ``waves`` > 1: each stratum's sample (and the gold items) is split at random into that
    many near-equal waves; annotators get wave 1 when the batch is assigned and each further
    wave when it is released (:func:`batch_wave_release`). ``mode`` overrides the audit's
    labelling mode for this batch (see ``batch_preview``)."""
    if overlap < 1:
        raise ApplicationError("Overlap must be at least 1.", code="overlap")
    if not 1 <= waves <= MAX_WAVES:
        raise ApplicationError(f"Waves must lie in 1..{MAX_WAVES}.", code="waves")
    if waves > 1 and audit.kind == Audit.Kind.TRACE_RATINGS:
        raise ApplicationError(
            "Waves are for step-label audits (the expert sample of the stopping rule).",
            code="waves",
        )
    if not name.strip():
        raise ApplicationError("Give the batch a name.", code="name")
    if Batch.objects.filter(audit=audit, name=name).exists():
        raise ConflictError(f"The audit already has a batch named {name!r}.", code="batch_exists")
    # Lock the audit: two admins building at once must not both take the same free steps.
    Audit.objects.select_for_update().filter(pk=audit.pk).first()
    plan = batch_preview(
        audit=audit,
        size=size,
        segmentation=segmentation,
        seed=seed or name,
        stratify_by=stratify_by,
        stratum_functions=stratum_functions,
        allocation=allocation,
        include_batched=include_batched,
        gold=gold,
        design=design,
        uncertainty=uncertainty,
        floor=floor,
        mode=mode,
    )
    whole_traces = plan.mode in TRACE_MODES
    share = audit.hidden_repeat_share if hidden_repeat_share is None else hidden_repeat_share
    if not 0 <= share <= 0.5:
        raise ApplicationError("The hidden repeat share must be between 0 and 0.5.", code="share")
    if whole_traces:
        # A repeated step inside a whole trace on screen is no hidden repeat.
        if hidden_repeat_share:
            raise ApplicationError("Trace modes have no hidden repeats.", code="share")
        share = 0.0
        if waves > 1:
            raise ApplicationError(
                "Trace modes are released whole: waves are for the shuffled-steps mode.",
                code="waves",
            )
    gap = audit.repeat_min_gap if repeat_min_gap is None else repeat_min_gap
    if gap < 1:
        raise ApplicationError("The minimum repeat gap must be at least 1.", code="gap")
    if waves > 1 and waves > plan.sample_size:
        raise ApplicationError(
            f"{waves} waves need at least {waves} sampled items; the batch has {plan.sample_size}.",
            code="waves",
        )
    wave_of = _waves_split(plan, waves, audit.blinding_seed)
    design = plan.design() | {
        "overlap": overlap,
        "hidden_repeat_share": share,
        "repeat_min_gap": gap,
    }
    if waves > 1:
        sizes = [0] * waves
        for s in plan.strata:
            for pk in plan.drawn[s.key]:
                sizes[wave_of[s.key, pk] - 1] += 1
        design["waves"] = {
            "count": waves,
            "sampled_per_wave": sizes,
            "rule": "each stratum's sample (and the gold items) split at random into near-equal "
            "waves; the items of waves 1..w are a probability sample with inclusion "
            "probability π × n_h(≤w) / n_h",
        }
    batch = Batch.objects.create(
        audit=audit,
        name=name,
        segmentation=plan.segmentation,
        seed=plan.seed,
        design=design,
        overlap=overlap,
        waves=waves,
        waves_released=1,
        mode=plan.mode,
        created_by=created_by,
    )
    if whole_traces:
        BatchItem.objects.bulk_create(_trace_step_items(batch, plan), batch_size=2000)
        return batch
    unit = "trace_id" if audit.kind == Audit.Kind.TRACE_RATINGS else "step_id"
    items = [
        BatchItem(
            batch=batch,
            stratum=s.key,
            inclusion_probability=plan.probabilities.get(pk, s.inclusion_probability),
            wave=wave_of[s.key, pk],
            **{unit: pk},
        )
        for s in plan.strata
        for pk in plan.drawn[s.key]
    ]
    items += [
        BatchItem(
            batch=batch,
            step_id=pk,
            stratum="gold",
            is_gold=True,
            gold_verdict=verdict,
            wave=wave_of["gold", pk],
        )
        for pk, verdict in plan.gold_units
    ]
    BatchItem.objects.bulk_create(items, batch_size=2000)
    return batch


MAX_WAVES = 20


def _waves_split(plan: BatchPlan, waves: int, secret: str) -> dict[tuple[str, int], int]:
    """(stratum key, unit pk) → wave: a seeded random order per stratum cut into ``waves``
    near-equal parts, the first parts taking the remainder."""
    wave_of: dict[tuple[str, int], int] = {}
    groups = [(s.key, list(plan.drawn[s.key])) for s in plan.strata]
    groups.append(("gold", [pk for pk, _ in plan.gold_units]))
    for key, units in groups:
        units = sorted(units)
        seeded_random(secret, f"batch:{plan.seed}:waves:{key}").shuffle(units)
        for i, pk in enumerate(units):
            wave_of[key, pk] = 1 + (i * waves) // len(units) if waves > 1 else 1
    return wave_of


def _trace_step_items(batch: Batch, plan: BatchPlan) -> list[BatchItem]:
    """Trace modes: every step (under the batch's segmentation) of every drawn trace, each
    with its trace's stratum and inclusion probability, so the step-level estimators weight
    them as the cluster sample they are."""
    drawn = {pk: s for s in plan.strata for pk in plan.drawn[s.key]}
    steps = (
        Step.objects.filter(trace_id__in=list(drawn), segmentation=plan.segmentation)
        .order_by("trace_id", "index")
        .values_list("pk", "trace_id")
    )
    return [
        BatchItem(
            batch=batch,
            step_id=pk,
            stratum=drawn[trace_id].key,
            inclusion_probability=drawn[trace_id].inclusion_probability,
        )
        for pk, trace_id in steps
    ]


# --- assignment ----------------------------------------------------------------------------
def williams_square(t: int) -> list[list[int]]:
    """Rows of a Williams design: a Latin square (each type once per row and per column)
    where each type also follows every other type equally often; 2t rows when t is odd.

    >>> williams_square(4)
    [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    """
    first, low, high = [0], 1, t - 1
    while len(first) < t:
        if len(first) % 2:
            first.append(low)
            low += 1
        else:
            first.append(high)
            high -= 1
    rows = [[(x + r) % t for x in first] for r in range(t)]
    if t % 2:
        rows += [list(reversed(row)) for row in rows]
    return rows


def _latin_square_order(
    items: list[BatchItem], row: list[int], types: list[str], rng: random.Random
) -> list[BatchItem]:
    by_type: dict[str, list[BatchItem]] = defaultdict(list)
    for item in items:
        by_type[item.trace.trace_type].append(item)
    for group in by_type.values():
        rng.shuffle(group)
    ordered: list[BatchItem] = []
    while any(by_type.values()):
        for index in row:
            group = by_type.get(types[index])
            if group:
                ordered.append(group.pop())
    return ordered


def text_key(text: str) -> str:
    """What counts as the same text for spacing: blinded text, whitespace and case folded."""
    return " ".join(text.split()).casefold()


def order_spaced(
    order: Sequence[BatchItem], *, keys: Mapping[int, str], gap: int
) -> list[BatchItem]:
    """The shuffled ``order`` with items of the same text key at least ``gap`` positions apart
    where possible. Deterministic (no randomness of its own, so the order stays reproducible
    from the seed) and the identity where nothing clashes: each position takes the first
    waiting item whose text was not seen in the last ``gap - 1`` positions; when every waiting
    item clashes, the one whose text was seen longest ago.

    Identical normalised steps from different arms back to back invite a comparison (issue 11)."""
    pending = list(order)
    placed: list[BatchItem] = []
    last: dict[str, int] = {}
    while pending:
        position = len(placed)
        choice, oldest = None, None
        for j, item in enumerate(pending):
            key = keys.get(item.pk)
            seen = last.get(key) if key is not None else None
            if seen is None or position - seen >= gap:
                choice = j
                break
            if oldest is None or seen < oldest[1]:
                oldest = (j, seen)
        if choice is None:
            choice = oldest[0]  # type: ignore[index]
        item = pending.pop(choice)
        key = keys.get(item.pk)
        if key is not None:
            last[key] = position
        placed.append(item)
    return _spacing_repaired(placed, keys=keys, gap=gap)


def _spacing_repaired(
    placed: list[BatchItem], *, keys: Mapping[int, str], gap: int
) -> list[BatchItem]:
    """The greedy pass can corner itself at the end (the clashing items are what is left):
    swap each item still too close to its twin with the first item anywhere whose move
    breaks nothing. Deterministic, and only touches the few clashing positions."""

    def fits(position: int) -> bool:
        key = keys.get(placed[position].pk)
        if key is None:
            return True
        window = range(max(0, position - gap + 1), min(len(placed), position + gap))
        return all(keys.get(placed[q].pk) != key for q in window if q != position)

    unfixable: set[int] = set()
    while True:
        clash = next((i for i in range(len(placed)) if i not in unfixable and not fits(i)), None)
        if clash is None:
            return placed
        for j in range(len(placed)):
            if j == clash:
                continue
            placed[clash], placed[j] = placed[j], placed[clash]
            if fits(clash) and fits(j):
                break
            placed[clash], placed[j] = placed[j], placed[clash]
        else:
            unfixable.add(clash)


@dataclass(eq=False)  # identity: the same batch item appears twice (original and repeat)
class _Slot:
    batch_item: BatchItem
    repeat_of: "_Slot | None" = None


def _with_hidden_repeats(
    order: list[BatchItem],
    share: float,
    rng: random.Random,
    *,
    gap: int,
    keys: Mapping[int, str],
) -> tuple[list[_Slot], dict]:
    """Insert the hidden repeats, each at least ``gap`` items after its original and ``gap``
    from any item with the same text. Originals are tried in a random order, those with room
    first; one that cannot be placed so is passed over while others can. When too few can
    (a short assignment), the rest come as far after their original as the end allows, and
    their gaps are returned (recorded in the batch's design)."""
    slots = [_Slot(item) for item in order]
    n = len(slots)
    eligible = [i for i, s in enumerate(slots[:-1]) if not s.batch_item.is_gold]
    count = min(round(share * n), len(eligible))
    roomy = [slots[i] for i in eligible if i + gap <= n]
    tight = [slots[i] for i in eligible if i + gap > n]
    pool = rng.sample(roomy, len(roomy)) + rng.sample(tight, len(tight))
    placed, deferred = 0, []
    for original in pool:
        if placed == count:
            break
        at = slots.index(original)
        key = keys.get(original.batch_item.pk)
        same = (
            [at]
            if key is None
            else [i for i, s in enumerate(slots) if keys.get(s.batch_item.pk) == key]
        )
        # Inserting at p: an item q < p stays p - q away, an item q >= p moves to q + 1.
        candidates = [
            p
            for p in range(at + gap, len(slots) + 1)
            if all((p - q if q < p else q + 1 - p) >= gap for q in same)
        ]
        if not candidates:
            deferred.append(original)
            continue
        slots.insert(rng.choice(candidates), _Slot(original.batch_item, original))
        placed += 1
    short = []
    for original in deferred[: count - placed]:
        at = slots.index(original)
        p = rng.randint(min(at + gap, len(slots)), len(slots))
        slots.insert(p, _Slot(original.batch_item, original))
        if p - at < gap:
            short.append(p - at)
    close, last = 0, {}
    for i, s in enumerate(slots):
        key = keys.get(s.batch_item.pk)
        if key is None:
            continue
        if key in last and i - last[key] < gap:
            close += 1
        last[key] = i
    return slots, {"repeats_closer_than_gap": short, "identical_texts_closer_than_gap": close}


@dataclass(frozen=True)
class _Unit:
    """What ``_with_hidden_repeats`` reads of a batch item, for callers holding only ids."""

    pk: int
    is_gold: bool = False


def _text_keys(items: QuerySet) -> dict[int, str]:
    """Batch item id → the key of its step's shown text (identical texts share one), so that
    a hidden repeat keeps its gap from every copy of the same text."""
    return {
        pk: text_key(text)
        for pk, text in items.filter(step__isnull=False).values_list("pk", "step__blinded_text")
    }


def hidden_repeat_order(
    pks: Sequence[int], *, share: float, gap: int, rng: random.Random
) -> tuple[list[tuple[int, int | None]], dict]:
    """``pks`` (non-gold batch items, in order) with the hidden repeats inserted as in a
    clinician's assignment: (batch item id, index in the result of the item it repeats or
    None), and the spacing report of ``_with_hidden_repeats``."""
    keys = _text_keys(BatchItem.objects.filter(pk__in=pks))
    slots, spacing = _with_hidden_repeats([_Unit(pk) for pk in pks], share, rng, gap=gap, keys=keys)
    at = {id(s): i for i, s in enumerate(slots)}
    out = [(s.batch_item.pk, None if s.repeat_of is None else at[id(s.repeat_of)]) for s in slots]
    return out, spacing


def _assignment_new(
    *,
    batch: Batch,
    annotator: AbstractBaseUser,
    due_date: date | None,
    reassigned_from: Assignment | None = None,
) -> Assignment:
    seed = batch.audit.blinding_seed
    serial = Assignment.objects.filter(batch=batch).count()
    (public_id,) = public_ids(
        seeded_random(seed, f"assignment-id:{batch.pk}:{annotator.pk}:{serial}"), 1
    )
    return Assignment.objects.create(
        batch=batch,
        annotator=annotator,
        public_id=public_id,
        due_date=due_date,
        reassigned_from=reassigned_from,
    )


def _wave_stream(name: str, wave: int) -> str:
    """Wave 1 uses the streams a batch without waves always used (same draws as before)."""
    return name if wave == 1 else f"{name}:wave:{wave}"


def _assignment_items_append(
    *,
    assignment: Assignment,
    order: list[BatchItem],
    share: float,
    gap: int = 1,
    keys: Mapping[int, str] | None = None,
    wave: int = 1,
) -> dict:
    """Add ``order`` (with its hidden repeats) after the assignment's last position."""
    seed = assignment.batch.audit.blinding_seed
    slots, spacing = _with_hidden_repeats(
        order,
        share,
        seeded_random(seed, _wave_stream(f"repeats:{assignment.public_id}", wave)),
        gap=gap,
        keys=keys or {},
    )
    last = assignment.items.order_by("-position").values_list("position", flat=True).first()
    start = (last or 0) + 1
    originals = [s for s in slots if s.repeat_of is None]
    rows = {
        id(s): AssignmentItem(
            assignment=assignment,
            position=i,
            batch_item=s.batch_item,
            is_hidden_repeat=s.repeat_of is not None,
        )
        for i, s in enumerate(slots, start=start)
    }
    AssignmentItem.objects.bulk_create([rows[id(s)] for s in originals], batch_size=2000)
    repeats = []
    for s in slots:
        if s.repeat_of is not None:
            row = rows[id(s)]
            row.repeat_of = rows[id(s.repeat_of)]
            repeats.append(row)
    AssignmentItem.objects.bulk_create(repeats, batch_size=2000)
    return spacing


def _wave_deal(*, batch: Batch, assignments: Sequence[Assignment], wave: int) -> dict[str, dict]:
    """Deal the items of ``wave`` to ``assignments``: each sampled item to ``batch.overlap``
    of them (loads balanced), gold items to everyone; each annotator's share in an
    independent shuffled order with the batch's share of hidden repeats, appended after the
    items of earlier waves. Returns the hidden repeats' spacing per assignment."""
    audit = batch.audit
    seed = audit.blinding_seed
    wave_items = batch.items.filter(wave=wave)
    items = list(wave_items.select_related("trace").order_by("pk"))
    gap = int(batch.design.get("repeat_min_gap", audit.repeat_min_gap))
    keys = _text_keys(wave_items)
    sampled = [i for i in items if not i.is_gold]
    gold = [i for i in items if i.is_gold]
    rng = seeded_random(seed, _wave_stream(f"batch:{batch.seed}:overlap", wave))
    rng.shuffle(sampled)
    slots = list(range(len(assignments)))
    rng.shuffle(slots)  # which annotator takes the first share: not the order given
    rating = audit.kind == Audit.Kind.TRACE_RATINGS
    if rating:
        # Deal each trace type separately so that every participant gets each type equally.
        sampled.sort(key=lambda i: i.trace.trace_type)
    shares: dict[int, list[BatchItem]] = defaultdict(list)
    k, m = batch.overlap, len(assignments)
    for i, item in enumerate(sampled):
        for j in range(k):
            shares[slots[(i * k + j) % m]].append(item)
    share = float(batch.design.get("hidden_repeat_share", 0.0))
    types = sorted({i.trace.trace_type for i in sampled}) if rating else []
    square = williams_square(len(types)) if types else []
    placement: dict[str, dict] = {}
    for p, assignment in enumerate(assignments):
        own = shares[p] + gold
        order_rng = seeded_random(
            seed, _wave_stream(f"batch:{batch.seed}:order:{assignment.annotator_id}", wave)
        )
        if rating:
            order = _latin_square_order(own, square[p % len(square)], types, order_rng)
            repeat_share = 0.0
        else:
            order = sorted(own, key=lambda i: i.pk)
            order_rng.shuffle(order)
            order = order_spaced(order, keys=keys, gap=gap)
            repeat_share = share
        placement[assignment.public_id] = _assignment_items_append(
            assignment=assignment,
            order=order,
            share=repeat_share,
            gap=gap,
            keys=keys,
            wave=wave,
        )
    return placement


@transaction.atomic
def batch_assign(
    *,
    batch: Batch,
    annotators: Sequence[AbstractBaseUser],
    due_date: date | None = None,
    confirm_leak: bool = False,
    confirmed_by: AbstractBaseUser | None = None,
) -> list[Assignment]:
    """Give each sampled item to ``batch.overlap`` annotators (loads balanced), gold items to
    everyone; each annotator gets an independent shuffled order (trace-rating audits: a
    Williams Latin square over trace types) with the batch's share of hidden repeats.

    A batch in waves: only the released waves are dealt now, each wave in its own shuffled
    block; later waves are dealt when released (:func:`batch_wave_release`), so an
    unreleased item has no assignment item and no annotator endpoint can reach it.

    The leak gate runs first: when the blinding classifier's interval on what the annotators
    will see lies above the audit's ``leak_threshold``, assigning needs ``confirm_leak``. The
    figures (and the confirmation: who, when) are kept in ``batch.leak_gate``."""
    batch = Batch.objects.select_for_update().select_related("audit").get(pk=batch.pk)
    if batch.assignments.exists():
        raise ConflictError(
            "The batch is already assigned; reassign unfinished work instead.",
            code="already_assigned",
        )
    annotators = list(dict.fromkeys(annotators))
    if not annotators:
        raise ApplicationError("Choose at least one annotator.", code="annotators")
    if batch.overlap > len(annotators):
        raise ApplicationError(
            f"An overlap of {batch.overlap} needs at least {batch.overlap} annotators.",
            code="overlap",
        )
    check = batch_leak_check(batch=batch)
    figures = check.as_dict()
    if check.above and not confirm_leak:
        raise ConflictError(
            f"What the annotators will see gives the arm away: AUC {check.auc:.3f} "
            f"[{check.ci_low:.3f}, {check.ci_high:.3f}] lies above the audit's threshold "
            f"{check.threshold:.2f}. Add a replacement rule and re-check, or confirm.",
            code="leak_gate",
            extra=figures,
        )
    # Kept for every assigned batch, so the report's blinding section can show per batch what
    # its annotators' items gave away when it was assigned (and who confirmed, if anyone).
    now = timezone.now().isoformat()
    batch.leak_gate = {
        "check": figures,
        "checked_at": now,
        "confirmed_by": (confirmed_by.get_username() if confirmed_by else "")
        if check.above
        else "",
        "confirmed_at": now if check.above else None,
    }
    batch.save(update_fields=["leak_gate"])
    if batch.mode in TRACE_MODES:
        return _traces_assign(batch=batch, annotators=annotators, due_date=due_date)
    gap = int(batch.design.get("repeat_min_gap", batch.audit.repeat_min_gap))
    assignments = [
        _assignment_new(batch=batch, annotator=annotator, due_date=due_date)
        for annotator in annotators
    ]
    placement = _wave_deal(batch=batch, assignments=assignments, wave=1)
    later = {
        str(wave): _wave_deal(batch=batch, assignments=assignments, wave=wave)
        for wave in range(2, batch.waves_released + 1)
    }
    # Where the assignment was too short (or too repetitive) for the gap, say so: the report
    # and an admin can see which repeats came closer than the design asked.
    batch.design = batch.design | {"repeat_min_gap": gap, "spacing": placement}
    if later:
        batch.design["spacing_by_wave"] = later
    batch.save(update_fields=["design"])
    return assignments


@dataclass(frozen=True)
class WaveRelease:
    wave: int
    waves: int
    items_added: dict[str, int]  # assignment public id → assignment items added
    reopened: list[str]  # submitted assignments reopened for the new wave


def batch_active_assignments(*, batch: Batch) -> list[Assignment]:
    """The batch's assignments that still hold work: not those reassigned to someone else."""
    moved = Assignment.objects.filter(batch=batch, reassigned_from__isnull=False).values(
        "reassigned_from"
    )
    return list(batch.assignments.exclude(pk__in=moved).select_related("annotator").order_by("pk"))


@transaction.atomic
def batch_wave_release(*, batch: Batch, by: AbstractBaseUser | None) -> WaveRelease:
    """Release the batch's next wave: its items are dealt to the assignments now (as the
    first wave was), and assignments already submitted are reopened (logged) so their
    annotators can label the new items. Before assignment it only moves the counter."""
    batch = Batch.objects.select_for_update().select_related("audit").get(pk=batch.pk)
    if batch.waves_released >= batch.waves:
        raise ConflictError(
            f"All {batch.waves} waves of the batch are released.", code="all_released"
        )
    wave = batch.waves_released + 1
    assignments = batch_active_assignments(batch=batch)
    if assignments and len(assignments) < batch.overlap:
        raise ConflictError(
            f"An overlap of {batch.overlap} needs {batch.overlap} assignments holding work; "
            f"the batch has {len(assignments)}.",
            code="overlap",
        )
    reopened = [a for a in assignments if a.submitted_at is not None]
    if reopened and by is None:
        raise ApplicationError(
            "Say who releases the wave: submitted assignments are reopened in their name.",
            code="released_by",
        )
    for assignment in reopened:
        AssignmentEvent.objects.create(
            assignment=assignment,
            kind=AssignmentEvent.Kind.REOPENED,
            by=by,
            submitted_at=assignment.submitted_at,
            note=f"wave {wave} of {batch.waves} released",
        )
    Assignment.objects.filter(pk__in=[a.pk for a in reopened]).update(submitted_at=None)
    before = {a.public_id: a.items.count() for a in assignments}
    spacing = _wave_deal(batch=batch, assignments=assignments, wave=wave) if assignments else {}
    batch.waves_released = wave
    fields = ["waves_released"]
    if spacing:
        batch.design = batch.design | {
            "spacing_by_wave": {**batch.design.get("spacing_by_wave", {}), str(wave): spacing}
        }
        fields.append("design")
    batch.save(update_fields=fields)
    return WaveRelease(
        wave=wave,
        waves=batch.waves,
        items_added={a.public_id: a.items.count() - before[a.public_id] for a in assignments},
        reopened=[a.public_id for a in reopened],
    )


def _traces_assign(
    *, batch: Batch, annotators: Sequence[AbstractBaseUser], due_date: date | None
) -> list[Assignment]:
    """Trace modes: each drawn trace goes to ``batch.overlap`` annotators (loads balanced by
    trace); each annotator gets the traces in an independent shuffled order, and each trace's
    steps as consecutive positions in their order in the trace (its page shows them so)."""
    seed = batch.audit.blinding_seed
    steps: dict[int, list[BatchItem]] = defaultdict(list)
    for item in batch.items.select_related("step").order_by("step__trace_id", "step__index"):
        steps[item.step.trace_id].append(item)
    traces = sorted(steps)
    rng = seeded_random(seed, f"batch:{batch.seed}:overlap")
    rng.shuffle(traces)
    slots = list(range(len(annotators)))
    rng.shuffle(slots)
    shares: dict[int, list[int]] = defaultdict(list)
    k, m = batch.overlap, len(annotators)
    for i, trace_id in enumerate(traces):
        for j in range(k):
            shares[slots[(i * k + j) % m]].append(trace_id)
    assignments = []
    for p, annotator in enumerate(annotators):
        own = sorted(shares[p])
        seeded_random(seed, f"batch:{batch.seed}:order:{annotator.pk}").shuffle(own)
        order = [item for trace_id in own for item in steps[trace_id]]
        assignment = _assignment_new(batch=batch, annotator=annotator, due_date=due_date)
        _assignment_items_append(assignment=assignment, order=order, share=0.0)
        assignments.append(assignment)
    return assignments


@transaction.atomic
def assignment_reassign(
    *, assignment: Assignment, to_annotator: AbstractBaseUser, due_date: date | None = None
) -> Assignment:
    """Move the unfinished items of ``assignment`` to a new assignment of ``to_annotator``.
    Labels already given stay where they are; hidden repeats whose original stays are dropped
    (a repeat only measures consistency with oneself)."""
    assignment = (
        Assignment.objects.select_for_update().select_related("batch__audit").get(pk=assignment.pk)
    )
    if assignment.is_locked:
        raise ConflictError(
            "The assignment is submitted; nothing is left to move.", code="assignment_locked"
        )
    if assignment.annotator_id == to_annotator.pk:
        raise ApplicationError("Choose another annotator.", code="same_annotator")
    batch = assignment.batch
    if Assignment.objects.filter(batch=batch, annotator=to_annotator).exists():
        raise ConflictError(
            f"{to_annotator.get_username()} already has an assignment in this batch.",
            code="already_assigned",
        )
    done = (
        Exists(Label.objects.filter(assignment_item=OuterRef("pk")))
        | Exists(TraceRating.objects.filter(assignment_item=OuterRef("pk")))
        | item_marked()
    )
    items = list(
        assignment.items.annotate(done=done).select_related("batch_item").order_by("position")
    )
    if batch.mode in TRACE_MODES:
        # Whole traces move, never part of one: a trace any of whose steps is done stays.
        traces = dict(assignment.items.values_list("pk", "batch_item__step__trace_id"))
        started = {traces[i.pk] for i in items if i.done}
        for item in items:
            item.done = item.done or traces[item.pk] in started
    moving = [
        i
        for i in items
        if not i.done
        and (
            not i.is_hidden_repeat
            or (i.repeat_of_id and not next(o for o in items if o.pk == i.repeat_of_id).done)
        )
    ]
    moving_ids = {i.pk for i in moving}
    dropped = [i for i in items if not i.done and i.pk not in moving_ids]
    if not moving:
        raise ApplicationError("Nothing unfinished to move.", code="nothing_to_move")
    new = Assignment.objects.create(
        batch=batch,
        annotator=to_annotator,
        public_id=public_ids(
            seeded_random(
                batch.audit.blinding_seed,
                f"assignment-id:{batch.pk}:{to_annotator.pk}:reassign:{assignment.pk}",
            ),
            1,
        )[0],
        due_date=due_date or assignment.due_date,
        reassigned_from=assignment,
    )
    # Relative order kept (it was already a private shuffle); positions renumbered 1..n.
    for position, item in enumerate(moving, start=1):
        item.assignment = new
        item.position = 1_000_000 + position
    AssignmentItem.objects.bulk_update(moving, ["assignment", "position"], batch_size=2000)
    AssignmentItem.objects.filter(pk__in=[i.pk for i in dropped]).delete()
    for item in moving:
        item.position -= 1_000_000
    AssignmentItem.objects.bulk_update(moving, ["position"], batch_size=2000)
    _renumber(assignment)
    return new


def _renumber(assignment: Assignment) -> None:
    """Close the gaps left by moved items, keeping the order (two passes: unique positions)."""
    items = list(assignment.items.order_by("position"))
    for position, item in enumerate(items, start=1):
        item.position = 1_000_000 + position
    AssignmentItem.objects.bulk_update(items, ["position"], batch_size=2000)
    for item in items:
        item.position -= 1_000_000
    AssignmentItem.objects.bulk_update(items, ["position"], batch_size=2000)


def batch_build_and_assign(
    *, annotators: Sequence[AbstractBaseUser], due_date: date | None = None, **options
) -> tuple[Batch, list[Assignment]]:
    with transaction.atomic():
        batch = batch_build(**options)
        try:
            assignments = batch_assign(batch=batch, annotators=annotators, due_date=due_date)
        except IntegrityError as exc:  # pragma: no cover - guarded above
            raise ConflictError("Could not assign the batch.") from exc
    return batch, assignments
