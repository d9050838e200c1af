"""The judge's uncertainty per step, for the active expert-sample design (issue 15).

Registered with annotations as the uncertainty source ``judge-runs:<id>[,<id>...]``
(``annotations.services.active_design``). Per step, from what the verdicts hold, in this order:

1. the judge's **token probability** of "error" (``prompt_record["error_probability"]``, the
   mean over its samples, read from the log-probabilities the endpoint returned, see
   ``judges.clients.logprobs``): the judge's own sampling distribution, finer than a share of
   a few votes, used as it is — not smoothed by votes — but kept within [0.05, 0.95]
   (``error_probability(token_probability=...)`` says why);
2. its **stated confidence** in its verdict (``prompt_record["stated_confidence"]``), c for an
   "error" verdict and 1 − c for a "correct" one (``error_probability(confidence=...)``);
3. the **share of its samples** (valid, non-abstaining) that say "error", smoothed towards 1/2
   by the number of votes (``auditapp.agreement.active.error_probability``). A run with one
   sample per step knows no uncertainty this way: such steps get 1/2.

Several runs (judges): the mean of the runs' probabilities (1 or 2) where every run has one for
the step, else the share of runs that say "error", smoothed by the number of runs. The
description, recorded on the batch and shown, names the sources the runs hold.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from auditapp.agreement.active import error_probability
from auditapp.exceptions import ApplicationError
from judges.models import JudgeRun, JudgeVerdict

VOTING = ("correct", "error")
TOKEN_SOURCE = "the judge's token probability of 'error'"
CONFIDENCE_SOURCE = "the judge's stated confidence"


def _run_ids(argument: str) -> list[int]:
    try:
        ids = [int(part) for part in argument.split(",") if part.strip()]
    except ValueError:
        raise ApplicationError(
            f"judge-runs takes run ids separated by commas, not {argument!r}.", code="uncertainty"
        ) from None
    if not ids:
        raise ApplicationError("judge-runs needs at least one run id.", code="uncertainty")
    found = set(JudgeRun.objects.filter(pk__in=ids).values_list("pk", flat=True))
    missing = sorted(set(ids) - found)
    if missing:
        raise ApplicationError(f"No judge run {', '.join(map(str, missing))}.", code="uncertainty")
    return ids


def _unit(value: Any) -> float | None:
    """``value`` if it is a number in [0, 1], else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 1 else None


def _stated(record: Mapping[str, Any], verdict: str) -> float | None:
    """The error probability a stated confidence in ``verdict`` implies, or None."""
    confidence = _unit(record.get("stated_confidence"))
    if confidence is None or verdict not in VOTING:
        return None
    return confidence if verdict == "error" else 1.0 - confidence


def stated_error_probability(record: Any, verdict: str) -> tuple[str, float] | None:
    """(source, the error probability the judge itself stated) from one verdict's record:
    its token probability ("token"), else its stated confidence ("confidence"), else None.
    The one order both the stored ``JudgeVerdict.error_probability`` and the design use."""
    record = record or {}
    token = _unit(record.get("error_probability"))
    if token is not None:
        return "token", token
    stated = _stated(record, verdict)
    if stated is not None:
        return "confidence", stated
    return None


def _judge_probability(record: Any, verdict: str) -> tuple[str, float] | None:
    """:func:`stated_error_probability`, a token probability kept within the design's range."""
    found = stated_error_probability(record, verdict)
    if found and found[0] == "token":
        return "token", float(error_probability(token_probability=np.array([found[1]]))[0])
    return found


def _samples(record: Any, verdict: str) -> list[str]:
    return [v for v in (record or {}).get("sample_verdicts", [verdict]) if v in VOTING]


def _sources_held(ids: list[int]) -> list[str]:
    """Which sources the runs' verdicts hold, in the order they are used (for the
    description): "token", "confidence", "votes" (steps with neither; "none" when those
    steps have one sample of one run: they get ½)."""
    verdicts = JudgeVerdict.objects.filter(run_id__in=ids, verdict__in=VOTING)
    held = []
    if verdicts.filter(prompt_record__has_key="error_probability").exists():
        held.append("token")
    if verdicts.filter(prompt_record__has_key="stated_confidence").exists():
        held.append("confidence")
    if not held or (
        verdicts.exclude(prompt_record__has_key="error_probability")
        .exclude(prompt_record__has_key="stated_confidence")
        .exists()
    ):
        single = len(ids) == 1 and held and _samples_per_step(ids[0]) <= 1
        held.append("none" if single else "votes")
    return held


def _samples_per_step(run_id: int) -> int:
    settings = JudgeRun.objects.filter(pk=run_id).values_list("judge__samples_per_step", flat=True)
    return int(settings.first() or 1)


def _description(ids: list[int], held: list[str]) -> str:
    runs = ", ".join(map(str, ids))
    one = len(ids) == 1
    kind = "samples of one judge run" if one else f"{len(ids)} judge runs"
    votes = f"share of 'error' among the {kind}"
    if held == ["votes"]:
        return f"{votes} ({runs})"
    names = {
        "token": TOKEN_SOURCE if one else "the mean of the judges' token probabilities of 'error'",
        "confidence": CONFIDENCE_SOURCE if one else "the mean of the judges' stated confidences",
        "votes": f"the {votes}",
        "none": "½ (one sample per step, no vote share)",
    }
    label = "run" if one else "runs"
    return ", else ".join(names[k] for k in held) + f" ({label} {runs})"


def _rows(ids: list[int], step_ids: Sequence[int]):
    return (
        JudgeVerdict.objects.filter(run_id__in=ids, step_id__in=set(step_ids))
        .values_list("run_id", "step_id", "verdict", "prompt_record")
        .iterator(chunk_size=5000)
    )


def _several_runs(
    ids: list[int], step_ids: Sequence[int]
) -> tuple[dict[int, float], dict[int, list[str]]]:
    """Several runs: per step the mean of the runs' own probabilities where every run has
    one, and the runs' verdicts for the other steps."""
    own: dict[int, list[float]] = defaultdict(list)
    calls: dict[int, list[str]] = defaultdict(list)
    for _, step_id, verdict, record in _rows(ids, step_ids):
        found = _judge_probability(record, verdict)
        if found is not None:
            own[step_id].append(found[1])
        if verdict in VOTING:
            calls[step_id].append(verdict)
    means = {pk: sum(ps) / len(ps) for pk, ps in own.items() if len(ps) == len(ids)}
    rest = {pk: vs for pk, vs in calls.items() if pk not in means and vs}
    return means, rest


def judge_runs_source(argument: str):
    """The registered source: ``(probabilities function, description)``."""
    ids = _run_ids(argument)

    def probabilities(step_ids: Sequence[int]) -> Mapping[int, float]:
        out: dict[int, float] = {}
        if len(ids) == 1:
            shares, votes = {}, 0
            for _, step_id, verdict, record in _rows(ids, step_ids):
                found = _judge_probability(record, verdict)
                if found is not None:
                    out[step_id] = found[1]
                    continue
                samples = _samples(record, verdict)
                if samples:
                    shares[step_id] = sum(v == "error" for v in samples) / len(samples)
                    votes = max(votes, len(samples))
            if votes <= 1:
                return out  # one sample per step: no uncertainty known from votes
        else:
            out, calls = _several_runs(ids, step_ids)
            shares = {pk: sum(v == "error" for v in vs) / len(vs) for pk, vs in calls.items()}
            votes = len(ids)
        pks = list(shares)
        if pks:
            smoothed = error_probability(
                sample_error_share=np.array([shares[pk] for pk in pks]), votes=votes
            )
            out.update(zip(pks, smoothed.tolist(), strict=True))
        return out

    return probabilities, _description(ids, _sources_held(ids))


def judge_runs_predictions(argument: str):
    """The planner's predictor (``annotations.services.active_design``): per step the judge's
    own probability of "error" where the verdicts hold one (as ``judge_runs_source`` reads it),
    else the share of the run's samples that say "error" (its verdict with one sample),
    unsmoothed; and the samples per step — 0 when every prediction is the judge's own
    probability (nothing to smooth, and the active design applies even with one sample).
    Several runs: the mean of the runs' probabilities where every run has one, else the share
    of runs."""
    ids = _run_ids(argument)

    def predictions(step_ids: Sequence[int]) -> tuple[Mapping[int, float], int]:
        own: dict[int, float] = {}
        calls: dict[int, list[str]] = defaultdict(list)
        if len(ids) == 1:
            for _, step_id, verdict, record in _rows(ids, step_ids):
                found = _judge_probability(record, verdict)
                if found is not None:
                    own[step_id] = found[1]
                else:
                    calls[step_id] += _samples(record, verdict)
        else:
            own, calls = _several_runs(ids, step_ids)
        shares = {pk: sum(v == "error" for v in vs) / len(vs) for pk, vs in calls.items() if vs}
        votes = max((len(vs) for vs in calls.values() if vs), default=0)
        if own and votes == 1:
            votes = 0  # the judge's own probabilities decide; single votes stay as they are
        return {**shares, **own}, votes

    return predictions, _description(ids, _sources_held(ids))
