"""Coverage simulation of the Likert interval: crossed participant and trace effects.

Each simulated study has participants with their own offset and traces with their own
quality (both random), each participant rating ``per_participant`` of a pool of traces of one
type on a 1-7 scale (a latent normal rounded and clipped). The true mean is the population
mean of that rounded rating, taken from two million draws of the same model.
"""

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.likert import likert_summary

SD_PARTICIPANT, SD_TRACE, SD_NOISE, CENTRE = 0.8, 0.6, 1.0, 4.2


def _rating(latent):
    return np.clip(np.rint(latent), 1, 7)


def _true_mean(rng):
    draws = 2_000_000
    latent = CENTRE + sum(rng.normal(0, sd, draws) for sd in (SD_PARTICIPANT, SD_TRACE, SD_NOISE))
    return float(_rating(latent).mean())


def _study(rng, *, participants, traces, per_participant):
    trace_effect = rng.normal(0, SD_TRACE, traces)
    participant_effect = rng.normal(0, SD_PARTICIPANT, participants)
    chosen = np.argsort(rng.random((participants, traces)), axis=1)[:, :per_participant]
    who = np.repeat(np.arange(participants), per_participant)
    which = chosen.ravel()
    latent = (
        CENTRE + participant_effect[who] + trace_effect[which] + rng.normal(0, SD_NOISE, who.size)
    )
    return pd.DataFrame(
        {
            "trace_id": np.char.add("t", which.astype(str)),
            "trace_type": "cot",
            "rater": np.char.add("p", who.astype(str)),
            "item": "clarity",
            "value": _rating(latent),
        }
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("participants", "traces", "low", "high"),
    # 600 studies a size: a binomial SE of ~0.009 around the true coverage
    [(8, 12, 0.93, 0.97), (16, 24, 0.93, 0.97), (30, 24, 0.93, 0.97), (100, 24, 0.93, 0.97)],
)
def test_two_way_interval_covers_about_95_percent(participants, traces, low, high):
    rng = np.random.default_rng(participants)
    truth = _true_mean(rng)
    covered = []
    for _ in range(600):
        ratings = _study(rng, participants=participants, traces=traces, per_participant=4)
        row = likert_summary(ratings)["rows"][0]
        covered.append(row["ci_low"] <= truth <= row["ci_high"])
    coverage = float(np.mean(covered))
    print(f"{participants} participants x {traces} traces: coverage {coverage:.3f}")
    assert low <= coverage <= high


def test_an_interval_that_ignores_the_clustering_undercovers():
    # the simulation can fail: treating ratings as independent covers far too little
    rng = np.random.default_rng(5)
    truth = _true_mean(rng)
    covered = []
    for _ in range(300):
        ratings = _study(rng, participants=30, traces=24, per_participant=4)
        values = ratings["value"]
        half = 1.98 * values.std(ddof=1) / np.sqrt(len(values))
        covered.append(abs(ratings["value"].mean() - truth) <= half)
    assert np.mean(covered) < 0.85
