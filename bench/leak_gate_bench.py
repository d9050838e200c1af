"""The leak gate's classifier on a 2,000-item batch (issue 11): seconds to answer, on PostgreSQL.

Imports the styled two-arm fixture (250 questions x 2 arms x 5 paragraph steps = 2,500 steps,
norm-v1 so that the arms are told apart and the classifier does real work), draws a 2,000-item
batch and times ``batch_leak_check`` (shown texts, TF-IDF, 5-fold grouped cross-validation,
500 bootstrap resamples, top n-grams). Target: < 5 s.

    .venv/bin/python bench/leak_gate_bench.py [--repeat 3]
"""

import argparse
import tempfile
import time
from pathlib import Path

from _setup import ROOT, django_setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    django_setup(fresh=True)
    import sys

    sys.path.insert(0, str(ROOT))
    from annotations.services.audits import audit_create
    from annotations.services.batches import batch_build
    from annotations.services.imports import import_file
    from annotations.services.leak_gate import batch_leak_check
    from annotations.services.normalise import NORMALISER_V1
    from tests.annotations.fixtures.styled_arms import styled_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        path = styled_jsonl(Path(tmp) / "styled.jsonl", questions=250)
        audit = audit_create(
            slug="bench-leak", name="Leak gate bench", normaliser_version=NORMALISER_V1
        )
        import_file(audit=audit, path=path, segmenter_names=["paragraphs"])
    batch = batch_build(audit=audit, name="big", size=2000, segmentation="paragraphs")
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        check = batch_leak_check(batch=batch)
        times.append(time.perf_counter() - start)
    best = min(times)
    print(f"items checked        {check.n_items:>8,}")
    print(f"AUC                  {check.auc:>8.3f}  [{check.ci_low:.3f}, {check.ci_high:.3f}]")
    print(
        f"seconds (best of {args.repeat})  {best:>8.2f}   (target < 5)  "
        f"{'OK' if best < 5 else 'ABOVE TARGET'}"
    )


if __name__ == "__main__":
    main()
