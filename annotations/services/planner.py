"""The pilot planner on a batch (issue 15): how many expert labels each design needs for a
target half-width on the gap that defines the ordering, from a judge run and the expert
labels given so far (``auditapp.agreement.pilot_planning``), and which design to use.

The pilot is every expert label of the audit under the batch's segmentation (gold items
and hidden repeats left out; abstentions are missing), paired with the judge's prediction on
the same step; the judge's predictions on every step of each arm give the population side.
The gap planned for is the one between the two arms the judge puts closest together (the
hardest neighbours to order). The pilot is read as if drawn uniformly within an arm; an
actively drawn pilot over-represents uncertain steps and makes the plan conservative.
"""

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from annotations.models import Batch, BatchItem, Label, Step
from annotations.services.active_design import prediction_source_get
from auditapp.agreement.pilot_planning import ArmPilot, pilot_plan
from auditapp.exceptions import ApplicationError

MIN_PILOT_LABELS = 5  # per arm: fewer, and the pilot's variances mean nothing
# What to pass to create_batch for each planned design.
DESIGN_OPTIONS = {
    "expert-only": "--design stratified",
    "PPI": "--design stratified",
    "PPI++": "--design stratified (the report's PPI++ uses every judged step)",
    "stratified PPI": "--design stratified-ppi --uncertainty {judge}",
    "active + PPI++": "--design active --uncertainty {judge}",
}
PLANNED = ("expert-only", "PPI++", "stratified PPI", "active + PPI++")


@dataclass(frozen=True)
class BatchPlanner:
    judge: str
    source: str
    half_width: float
    alpha: float
    pair: tuple[str, str]  # blind codes of the closest arms by the judge
    judge_rates: dict[str, float]
    pilot_labels: dict[str, int]
    steps_per_trace: float
    design_effect: float
    icc: float
    n_per_arm: dict[str, int]
    more_per_arm: dict[str, int]  # beyond the pilot's labels of the pair's larger arm
    relative_to_expert: dict[str, float]
    suggestion: str
    suggestion_options: str
    rule: str
    notes: list[str] = field(default_factory=list)


def batch_planner(
    *, batch: Batch, judge: str = "", half_width: float = 0.05, alpha: float = 0.05
) -> BatchPlanner:
    """Labels per arm by design for the batch's audit (module docstring)."""
    if not 0 < half_width < 1:
        raise ApplicationError("The half-width must lie between 0 and 1.", code="half_width")
    if not 0 < alpha < 0.5:
        raise ApplicationError("Alpha must lie between 0 and 0.5.", code="alpha")
    judge = judge or str((batch.design.get("sampling") or {}).get("uncertainty") or "")
    if not judge:
        raise ApplicationError(
            "Choose the judge the planner reads, e.g. judge-runs:<run id>.", code="judge"
        )
    predictions_for, described = prediction_source_get(judge)
    steps = list(
        Step.objects.filter(audit=batch.audit, segmentation=batch.segmentation)
        .order_by("pk")
        .values_list("pk", "trace_id", "trace__condition__blind_code")
    )
    predictions, votes = predictions_for([pk for pk, _, _ in steps])
    if not predictions:
        raise ApplicationError("The judge has no verdict on this segmentation.", code="judge")
    labels: dict[int, list[float]] = defaultdict(list)
    for step_id, verdict in (
        Label.objects.filter(
            step__audit=batch.audit,
            step__segmentation=batch.segmentation,
            assignment_item__is_hidden_repeat=False,
            assignment_item__batch_item__is_gold=False,
        )
        .exclude(verdict="abstain")
        .values_list("step_id", "verdict")
    ):
        labels[step_id].append(1.0 if verdict == "error" else 0.0)
    arms: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for pk, trace, code in steps:
        if pk not in predictions:
            continue
        arm = arms[code]
        arm["f_all"].append(predictions[pk])
        if pk in labels:
            arm["y"].append(float(np.mean(labels[pk])))
            arm["f"].append(predictions[pk])
            arm["clusters"].append(trace)
    rates = {code: float(np.mean(a["f_all"])) for code, a in arms.items()}
    if len(rates) < 2:
        raise ApplicationError("Planning a gap needs two arms the judge has seen.", code="arms")
    ordered = sorted(rates, key=lambda c: (rates[c], c))
    pair = min(itertools.pairwise(ordered), key=lambda p: rates[p[1]] - rates[p[0]])
    short = {c: len(arms[c]["y"]) for c in pair if len(arms[c]["y"]) < MIN_PILOT_LABELS}
    if short:
        raise ApplicationError(
            f"The planner needs at least {MIN_PILOT_LABELS} expert labels per arm of the pair "
            f"{pair[0]} / {pair[1]}; so far " + ", ".join(f"{c}: {n}" for c, n in short.items()),
            code="pilot",
            extra={"labels": short},
        )
    pilots = {
        code: ArmPilot(
            y=np.asarray(arms[code]["y"]),
            f=np.asarray(arms[code]["f"]),
            f_all=np.asarray(arms[code]["f_all"]),
            clusters=np.asarray(arms[code]["clusters"]),
        )
        for code in pair
    }
    per_trace = list(
        BatchItem.objects.filter(batch=batch, is_gold=False, step__isnull=False).values_list(
            "step__trace_id", flat=True
        )
    )
    counts = np.bincount(np.unique(per_trace, return_inverse=True)[1]) if per_trace else [1]
    steps_per_trace = float(np.mean(counts))
    plan = pilot_plan(
        pilots,
        pair=pair,
        half_width=half_width,
        alpha=alpha,
        steps_per_trace=steps_per_trace,
        votes=votes if votes > 1 else 0,
    )
    n = {d: plan.n_per_arm[d] for d in PLANNED}
    notes = []
    if votes == 1:
        # One sample per step: every step is equally uncertain and the active design is the
        # stratified one (docs/sampling.md). 0: the predictions are the judge's own
        # probabilities (token log-probabilities, a stated confidence), used unsmoothed.
        n.pop("active + PPI++")
        notes.append("one judge sample per step: no uncertainty to draw by, no active design")
    best = min(n, key=lambda d: (n[d], PLANNED.index(d)))
    have = max(len(arms[c]["y"]) for c in pair)
    return BatchPlanner(
        judge=judge,
        source=described,
        half_width=half_width,
        alpha=alpha,
        pair=pair,
        judge_rates=rates,
        pilot_labels={c: len(a["y"]) for c, a in arms.items()},
        steps_per_trace=steps_per_trace,
        design_effect=plan.design_effect,
        icc=plan.icc,
        n_per_arm=n,
        more_per_arm={d: max(0, v - have) for d, v in n.items()},
        relative_to_expert={d: v / n["expert-only"] for d, v in n.items()},
        suggestion=best,
        suggestion_options=DESIGN_OPTIONS[best].format(judge=judge),
        rule=plan.rule,
        notes=notes,
    )
