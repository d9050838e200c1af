"""Small input checks shared by the statistics modules.

Every check raises a ``ValueError`` (or ``TypeError`` for a wrong kind of object) whose
message names the argument and what was wrong, so that a researcher who brings a CSV sees
which column or option to fix before any arithmetic runs.

Examples
--------
>>> import pandas as pd
>>> frame = pd.DataFrame({"unit": [1], "rater": ["a"]})
>>> require_columns(frame, ["unit", "rater", "value"], name="ratings")
Traceback (most recent call last):
...
ValueError: ratings is missing column(s) 'value'; it has 'unit', 'rater'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "plain",
    "require_columns",
    "require_confidence_level",
    "require_dataframe",
    "require_int",
    "require_no_duplicates",
    "require_one_of",
    "require_rng",
    "require_same_length",
]


def plain(value: object) -> object:
    """``value`` as a plain Python object (numpy scalars unwrapped), for readable messages.

    Examples
    --------
    >>> import numpy as np
    >>> repr(plain(np.int64(3)))
    '3'
    """
    return value.item() if isinstance(value, np.generic) else value


def require_dataframe(data: object, *, name: str) -> pd.DataFrame:
    """Return ``data`` if it is a DataFrame, else raise ``TypeError``.

    Examples
    --------
    >>> require_dataframe([1, 2], name="labels")
    Traceback (most recent call last):
    ...
    TypeError: labels must be a pandas DataFrame, not list
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, not {type(data).__name__}")
    return data


def require_columns(data: pd.DataFrame, columns: Sequence[str], *, name: str) -> None:
    """Raise ``ValueError`` naming every column of ``columns`` that ``data`` lacks.

    Parameters
    ----------
    data : pandas.DataFrame
        The table to check.
    columns : sequence of str
        Column names that must be present.
    name : str
        How the table is called in the message (e.g. ``"labels"``).

    Examples
    --------
    >>> import pandas as pd
    >>> require_columns(pd.DataFrame({"a": [1]}), ["a"], name="t")  # passes silently
    >>> require_columns(pd.DataFrame({"a": [1]}), ["b", "c"], name="t")
    Traceback (most recent call last):
    ...
    ValueError: t is missing column(s) 'b', 'c'; it has 'a'
    """
    require_dataframe(data, name=name)
    missing = [c for c in columns if c not in data.columns]
    if missing:
        have = ", ".join(repr(c) for c in data.columns) or "no columns"
        raise ValueError(
            f"{name} is missing column(s) {', '.join(map(repr, missing))}; it has {have}"
        )


def require_no_duplicates(data: pd.DataFrame, keys: Sequence[str], *, name: str) -> None:
    """Raise ``ValueError`` when two rows share the same ``keys``, naming the first repeat.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"unit": [1, 1], "rater": ["a", "a"], "value": [1, 2]})
    >>> require_no_duplicates(frame, ["unit", "rater"], name="ratings")
    Traceback (most recent call last):
    ...
    ValueError: ratings row 1 repeats unit=1, rater='a'; keep one row per (unit, rater)
    """
    duplicated = data.duplicated(list(keys), keep="first").to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        shown = ", ".join(f"{k}={plain(data[k].iloc[row])!r}" for k in keys)
        raise ValueError(f"{name} row {row} repeats {shown}; keep one row per ({', '.join(keys)})")


def require_one_of(value: object, allowed: Sequence[object], *, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``.

    Examples
    --------
    >>> require_one_of("ordered", ["nominal", "ordinal"], name="level")
    Traceback (most recent call last):
    ...
    ValueError: level must be one of 'nominal', 'ordinal'; got 'ordered'
    """
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def require_confidence_level(confidence_level: float) -> None:
    """Raise ``ValueError`` unless ``0 < confidence_level < 1``.

    Examples
    --------
    >>> require_confidence_level(95)
    Traceback (most recent call last):
    ...
    ValueError: confidence_level must lie strictly between 0 and 1; got 95
    """
    if not (isinstance(confidence_level, int | float) and 0 < confidence_level < 1):
        raise ValueError(
            f"confidence_level must lie strictly between 0 and 1; got {confidence_level!r}"
        )


def require_int(value: object, *, name: str, minimum: int) -> int:
    """Return ``value`` as int if it is an integer ``>= minimum``, else raise ``ValueError``.

    Examples
    --------
    >>> require_int(1, name="folds", minimum=2)
    Traceback (most recent call last):
    ...
    ValueError: folds must be an integer >= 2; got 1
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def require_rng(rng: object) -> np.random.Generator:
    """Return ``rng`` if it is a ``numpy.random.Generator``, else raise ``TypeError``.

    Randomness enters the statistics only through an explicit generator, so that every
    report is reproducible from its stored seed.

    Examples
    --------
    >>> require_rng(42)
    Traceback (most recent call last):
    ...
    TypeError: rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), not int
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), "
            f"not {type(rng).__name__}"
        )
    return rng


def require_same_length(**sequences: Sequence[object]) -> int:
    """Return the common length of the named sequences, else raise ``ValueError``.

    Examples
    --------
    >>> require_same_length(texts=["a", "b"], conditions=["x"])
    Traceback (most recent call last):
    ...
    ValueError: texts, conditions must have the same length; got 2, 1
    """
    lengths = {name: len(seq) for name, seq in sequences.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{', '.join(lengths)} must have the same length; "
            f"got {', '.join(str(n) for n in lengths.values())}"
        )
    return next(iter(lengths.values()), 0)
