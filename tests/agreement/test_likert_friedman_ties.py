"""Friedman's test when no participant tells the trace types apart: not defined, no warning."""

import warnings

import pandas as pd

from auditapp.agreement.likert import _friedman


def test_every_block_tied_gives_no_statistic_and_no_warning():
    group = pd.DataFrame(
        {
            "rater": ["a", "a", "a", "b", "b", "b"],
            "trace_type": ["x", "y", "z"] * 2,
            "value": [3, 3, 3, 5, 5, 5],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _friedman(group)
    assert out["statistic"] is None and out["p"] is None and out["n_raters"] == 2
