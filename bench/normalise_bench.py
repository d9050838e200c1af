"""The style normaliser alone: steps per second, norm-v1 against norm-v2 (issue 11).

Three sets of step texts, each normalised by both versions in one process (no database):

* ``import``: the import benchmark's paragraphs (bench/import_bench.py: a filler opener on
  most, ``**bold**`` on one claim in eight) — what the ≥ 30,000 steps/s import budget runs on;
* ``styled``: the paragraph and sentence steps of the two-arm styled fixture
  (tests/annotations/fixtures/styled_arms.py: bold across sentences, fillers mid-step, LaTeX,
  emoji, quotes, ``**Final Answer**``) — markup-heavy steps;
* ``plain``: the styled fixture's steps as norm-v2 blinds them — prose with nothing to remove.

Each figure is the best of ``--repeat`` runs (the machine is shared; the best run is the one
least disturbed).

    .venv/bin/python bench/normalise_bench.py [--steps 200000] [--repeat 5]
"""

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from import_bench import CLAIMS, FILLERS  # noqa: E402  (bench/ is on the path)

from annotations.services.normalise import normalise_v1  # noqa: E402
from annotations.services.normalise_v2 import normalise_v2  # noqa: E402
from annotations.services.segmenters import segment_paragraphs, segment_sentences  # noqa: E402
from tests.annotations.fixtures.styled_arms import styled_records  # noqa: E402


def import_texts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(FILLERS)}{rng.choice(CLAIMS)} (note {rng.randrange(10**6)})."
        for _ in range(count)
    ]


def styled_texts(count: int) -> list[str]:
    texts: list[str] = []
    seed = 11
    while len(texts) < count:
        for record in styled_records(questions=60, seed=seed):
            for segment in (segment_paragraphs, segment_sentences):
                texts.extend(s.text for s in segment(record["trace"]))
        seed += 1
    return texts[:count]


def rate(normalise: Callable[[str], str], texts: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for text in texts:
            normalise(text)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    styled = styled_texts(args.steps)
    sets = {
        "import": import_texts(args.steps),
        "styled": styled,
        "plain": [t for t in map(normalise_v2, styled) if t],
    }
    print(f"{'steps':<8}{'n':>9}{'chars':>7}{'norm-v1 /s':>13}{'norm-v2 /s':>13}{'v2 µs':>8}")
    for name, texts in sets.items():
        v1 = rate(normalise_v1, texts, args.repeat)
        v2 = rate(normalise_v2, texts, args.repeat)
        chars = sum(map(len, texts)) / len(texts)
        print(f"{name:<8}{len(texts):>9,}{chars:>7.0f}{v1:>13,.0f}{v2:>13,.0f}{1e6 / v2:>8.1f}")


if __name__ == "__main__":
    main()
