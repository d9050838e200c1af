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


@pytest.fixture
def fake_process(tmp_path):
    """Start the fake server as a separate process: ``start(*args) -> base_url``."""
    import sys
    from pathlib import Path

    from processes import ManagedProcess, free_port, wait_for_http

    root = Path(__file__).resolve().parents[2]
    started = []

    def start(*args: str) -> str:
        port = free_port()
        proc = ManagedProcess(
            [sys.executable, "-m", "judges.clients.fake_server", "--port", str(port), *args],
            env={**__import__("os").environ, "PYTHONPATH": str(root)},
            cwd=root,
            log=tmp_path / f"fake-{port}.log",
        )
        proc.start()
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/v1/models", timeout=30, process=proc)
        return base + "/v1"

    yield start
    for proc in started:
        proc.stop()


def fake_stats(base_url: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats", timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def fake_stats_of():
    return fake_stats


@pytest.fixture
def wait_run():
    """Poll a run until it ends, reconciling it like the periodic task would."""

    def wait(run, *, timeout_s: float = 120, stale_after_s: float = 5.0, on_poll=None):
        import time

        from judges.models import JudgeRun
        from judges.services import run_reconcile

        deadline = time.monotonic() + timeout_s
        reconciled = 0
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if on_poll:
                on_poll(run)
            if run.status in JudgeRun.ENDED:
                return run, reconciled
            reconciled += run_reconcile(run_id=run.pk, stale_after_s=stale_after_s)
            time.sleep(0.5)
        raise AssertionError(
            f"run {run.pk} still {run.status} after {timeout_s}s: {run.done}/{run.total}"
        )

    return wait
