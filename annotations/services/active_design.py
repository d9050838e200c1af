"""The active expert-sample design: within each stratum, inclusion probabilities that follow
a judge's uncertainty (``auditapp.agreement.active``), drawn by systematic PPS sampling.

Where the uncertainty comes from is not this app's business (annotations does not depend on
judges): an app registers an **uncertainty source** — a function from a source argument
(e.g. judge run ids) to a function giving each unit's error probability — and batch planning
looks it up by name (``judges`` registers ``judge-runs`` in its ``AppConfig.ready``).
"""

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from auditapp.agreement.active import DEFAULT_FLOOR, inclusion_probabilities, systematic_sample
from auditapp.exceptions import ApplicationError

# unit pks → {pk: error probability in [0, 1]}; units missing from the answer get 0.5.
ErrorProbabilities = Callable[[Sequence[int]], Mapping[int, float]]
UncertaintySource = Callable[[str], tuple[ErrorProbabilities, str]]

_SOURCES: dict[str, UncertaintySource] = {}


def register_uncertainty_source(name: str, source: UncertaintySource) -> None:
    """``source(argument)`` returns the probabilities function and a one-line description."""
    _SOURCES[name] = source


def uncertainty_source_get(spec: str) -> tuple[ErrorProbabilities, str]:
    """``"judge-runs:12,13"`` → the registered source's function and description."""
    name, _, argument = spec.partition(":")
    if name not in _SOURCES:
        known = ", ".join(sorted(_SOURCES)) or "none registered"
        raise ApplicationError(
            f"Unknown uncertainty source {name!r} (known: {known}).", code="uncertainty"
        )
    return _SOURCES[name](argument)


def draw_active(
    units: Sequence[int],
    sample: int,
    probabilities: Mapping[int, float],
    rng: np.random.Generator,
    *,
    floor: float = DEFAULT_FLOOR,
) -> tuple[list[int], dict[int, float]]:
    """``sample`` of ``units`` with π ∝ the uncertainty (at least floor·n/N); returns the
    drawn pks and every drawn unit's π (recorded as its inclusion probability)."""
    units = sorted(units)
    if sample == 0 or not units:
        return [], {}
    p = np.array([float(probabilities.get(pk, 0.5)) for pk in units])
    pi = inclusion_probabilities(p, n=sample, floor=floor)
    chosen = systematic_sample(pi, rng)
    return [units[i] for i in chosen], {units[i]: float(pi[i]) for i in chosen}


# --- the planner's predictor ------------------------------------------------------------
# unit pks → ({pk: the judge's prediction in [0, 1]}, samples per step); a prediction is the
# share of the judge's samples that say "error" (its verdict, 0 or 1, with one sample), or the
# judge's own probability of "error" (samples per step 0: used as it is, nothing to smooth).
Predictions = Callable[[Sequence[int]], tuple[Mapping[int, float], int]]
_PREDICTIONS: dict[str, Callable[[str], tuple[Predictions, str]]] = {}


def register_prediction_source(name: str, source: Callable[[str], tuple[Predictions, str]]):
    """Like :func:`register_uncertainty_source`, for the planner: ``source(argument)``
    returns the predictions function and a one-line description."""
    _PREDICTIONS[name] = source


def prediction_source_get(spec: str) -> tuple[Predictions, str]:
    name, _, argument = spec.partition(":")
    if name not in _PREDICTIONS:
        known = ", ".join(sorted(_PREDICTIONS)) or "none registered"
        raise ApplicationError(f"Unknown judge source {name!r} (known: {known}).", code="judge")
    return _PREDICTIONS[name](argument)
