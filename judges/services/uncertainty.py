"""The judge's uncertainty per step, for the active expert-sample design (issue 15).

Registered with annotations as the uncertainty source ``judge-runs:<id>[,<id>...]``
(``annotations.services.active_design``). From one run whose judge sampled several answers
per step: the share of its (valid, non-abstaining) samples that say "error"; from several
runs (judges): the share of runs that say "error". Either share is smoothed towards 1/2 by
the number of votes (``auditapp.agreement.active.error_probability``). A single run with one
sample per step knows no uncertainty: every step gets 1/2 and the design is uniform within
each stratum.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from auditapp.agreement.active import error_probability
from auditapp.exceptions import ApplicationError
from judges.models import JudgeRun, JudgeVerdict

VOTING = ("correct", "error")


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


def judge_runs_source(argument: str):
    """The registered source: ``(probabilities function, description)``."""
    ids = _run_ids(argument)

    def probabilities(step_ids: Sequence[int]) -> Mapping[int, float]:
        wanted = set(step_ids)
        rows = JudgeVerdict.objects.filter(run_id__in=ids, step_id__in=wanted).values_list(
            "run_id", "step_id", "verdict", "prompt_record"
        )
        if len(ids) == 1:
            shares, votes = {}, 0
            for _, step_id, verdict, record in rows.iterator(chunk_size=5000):
                samples = [
                    v for v in (record or {}).get("sample_verdicts", [verdict]) if v in VOTING
                ]
                if samples:
                    shares[step_id] = sum(v == "error" for v in samples) / len(samples)
                    votes = max(votes, len(samples))
            if votes <= 1:
                return {}  # one sample per step: no uncertainty known
        else:
            calls: dict[int, list[str]] = defaultdict(list)
            for _, step_id, verdict, _ in rows.iterator(chunk_size=5000):
                if verdict in VOTING:
                    calls[step_id].append(verdict)
            shares = {pk: sum(v == "error" for v in vs) / len(vs) for pk, vs in calls.items()}
            votes = len(ids)
        pks = list(shares)
        smoothed = error_probability(
            sample_error_share=np.array([shares[pk] for pk in pks]), votes=votes
        )
        return dict(zip(pks, smoothed.tolist(), strict=True))

    kind = "samples of one judge run" if len(ids) == 1 else f"{len(ids)} judge runs"
    return probabilities, f"share of 'error' among the {kind} ({', '.join(map(str, ids))})"


def judge_runs_predictions(argument: str):
    """The planner's predictor (``annotations.services.active_design``): per step the share
    of the run's samples that say "error" (its verdict with one sample), unsmoothed, and the
    samples per step; several runs: the share of runs."""
    ids = _run_ids(argument)

    def predictions(step_ids: Sequence[int]) -> tuple[Mapping[int, float], int]:
        wanted = set(step_ids)
        rows = JudgeVerdict.objects.filter(run_id__in=ids, step_id__in=wanted).values_list(
            "run_id", "step_id", "verdict", "prompt_record"
        )
        calls: dict[int, list[str]] = defaultdict(list)
        for _, step_id, verdict, record in rows.iterator(chunk_size=5000):
            samples = (
                [verdict] if len(ids) > 1 else (record or {}).get("sample_verdicts", [verdict])
            )
            calls[step_id] += [v for v in samples if v in VOTING]
        shares = {pk: sum(v == "error" for v in vs) / len(vs) for pk, vs in calls.items() if vs}
        votes = max((len(vs) for vs in calls.values()), default=0)
        return shares, votes

    kind = "samples of one judge run" if len(ids) == 1 else f"{len(ids)} judge runs"
    return predictions, f"share of 'error' among the {kind} ({', '.join(map(str, ids))})"
