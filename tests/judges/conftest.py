"""Fixtures for the judge tests: an in-process fake endpoint, judges made from specs, and a
helper that runs a run's chunks in the test process (no broker)."""

import pytest

from judges.clients.fake_server import fake_server


@pytest.fixture
def fake():
    """The fake OpenAI-compatible server on a free 127.0.0.1 port, 1 ms latency."""
    with fake_server(latency_ms=1, jitter_ms=0, keep_requests=5000) as server:
        yield server


def judge_spec(base_url: str, **overrides) -> dict:
    spec = {
        "name": "fake-judge",
        "base_url": base_url,
        "model": "fake-judge",
        "max_concurrency": 8,
        "timeout_s": 5,
        "max_retries": 3,
        "max_parse_retries": 1,
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def make_judge(db):
    from judges.services import judge_create_or_update

    def make(base_url: str, **overrides):
        return judge_create_or_update(spec=judge_spec(base_url, **overrides))

    return make


def _run_chunks(run, *, chunk_size: int = 50, final_attempt: bool = True) -> list:
    from judges.services import judge_chunk_run, run_missing_step_ids

    ids = run_missing_step_ids(run)
    return [
        judge_chunk_run(
            run_id=run.pk, step_ids=ids[i : i + chunk_size], final_attempt=final_attempt
        )
        for i in range(0, len(ids), chunk_size)
    ]


@pytest.fixture
def run_chunks():
    """Run every missing step of a run through ``judge_chunk_run`` in this process."""
    return _run_chunks
