"""A real inference server: llama-cpp-python's, serving a tiny random-weight llama (issue 14).

The model is written by ``tests/support/tiny_llama.py`` with the ``gguf`` package (no
download). Needs the ``llm-server`` extra (``pip install -e '.[llm-server]'``, which compiles
llama.cpp once; pip's wheel cache keeps the build). Without it these tests skip, unless
STEPAUDIT_REQUIRE_SERVICES=1, which makes them fail (``.ci/run`` installs the extra).
"""

import collections
import json
import os
import sys
import time
from pathlib import Path

import pytest
from processes import ManagedProcess, free_port, wait_for_http
from tiny_llama import missing_reason, missing_server_packages, nul_token_id, write_tiny_llama

from annotations.services.audits import audit_create
from annotations.services.imports import import_file
from judges.clients.openai_compat import ClientSettings, JudgeRequest, judge_many_sync
from judges.clients.probe import format_report, probe_sync
from judges.models import JudgeRun, JudgeVerdict
from judges.services import judge_chunk_run, run_create, run_missing_step_ids

pytestmark = [pytest.mark.llm_server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-random-llama"
N_CTX = 4096
FIGURES = Path(os.environ.get("STEPAUDIT_LLM_FIGURES", "/tmp/stepaudit-llm-server-figures.json"))


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    # A session fixture runs before the marker's check (tests/conftest.py), so it checks too.
    if missing := missing_server_packages():
        reason = missing_reason(missing)
        if os.environ.get("STEPAUDIT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required service missing: {reason}")
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("llama")
    model = write_tiny_llama(tmp / "tiny.gguf")
    port = free_port()
    proc = ManagedProcess(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(N_CTX),
            "--chat_format",
            "chatml",
            "--n_threads",
            "1",
        ],
        env=dict(os.environ),
        cwd=ROOT,
        log=tmp / "server.log",
    )
    proc.start()
    base = f"http://127.0.0.1:{port}/v1"
    wait_for_http(base + "/models", timeout=120, process=proc)
    yield base
    proc.stop()


@pytest.fixture
def small_audit(db, tmp_path):
    """8 traces of the demo, segmented as given (about 35 steps)."""
    lines = (ROOT / "docs" / "examples" / "traces.jsonl").read_text().splitlines()[:8]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(lines) + "\n")
    audit = audit_create(slug="llm-server", name="Real server")
    import_file(audit=audit, path=path, segmenter_names=["given"])
    return audit


def _record(key: str, value) -> None:
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    figures[key] = value
    FIGURES.write_text(json.dumps(figures, indent=2))


def _run(audit, judge) -> tuple[JudgeRun, float]:
    run = run_create(audit=audit, judge=judge, segmentation="given")
    started = time.monotonic()
    judge_chunk_run(run_id=run.pk, step_ids=run_missing_step_ids(run))
    elapsed = time.monotonic() - started
    run.refresh_from_db()
    return run, elapsed


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_the_schema_enforced_a_random_model_gives_verdicts_for_most_steps(
    llama_server, small_audit, make_judge
):
    # given a judge that enforces the verdict schema the way llama-cpp-python takes it, and the
    # settings the probe suggests for a one-slot server
    judge = make_judge(
        llama_server,
        name="llama-random",
        model=MODEL,
        structured_output="json_object_schema",
        temperature=1.0,
        max_tokens=48,
        max_concurrency=1,
        timeout_s=60,
        max_parse_retries=1,
    )
    # when the run goes through every step
    run, elapsed = _run(small_audit, judge)
    # then every step ended, and at least half parsed into verdicts
    kinds = collections.Counter(
        JudgeVerdict.objects.filter(run=run).values_list("verdict", flat=True)
    )
    parsed = sum(n for kind, n in kinds.items() if kind != "invalid")
    assert run.status == JudgeRun.Status.DONE and run.done == run.total
    assert parsed >= run.total / 2, kinds
    cached = sum(JudgeVerdict.objects.filter(run=run).values_list("cached_tokens", flat=True))
    _record(
        "schema_run",
        {
            "steps": run.total,
            "verdicts": dict(kinds),
            "parsed_share": round(parsed / run.total, 3),
            "steps_per_s": round(run.total / elapsed, 2),
            "seconds": round(elapsed, 1),
            "prompt_tokens_per_step": round(run.prompt_tokens / run.done, 1),
            "cached_tokens_per_step": round(cached / run.done, 1),
            "completion_tokens_per_step": round(run.completion_tokens / run.done, 1),
            "parse_methods": dict(
                collections.Counter(
                    m
                    for r in JudgeVerdict.objects.filter(run=run).values_list(
                        "prompt_record", flat=True
                    )
                    for m in r.get("parse_methods", [])
                )
            ),
        },
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_nuls_from_a_real_model_do_not_stall_a_run_on_postgresql(
    llama_server, small_audit, make_judge, monkeypatch
):
    # given a judge whose model is pushed to emit the NUL byte (logit_bias on its token)
    from judges.rendering import client_settings
    from judges.services import lanes

    def with_bias(judge, **kwargs):
        settings = client_settings(judge, **kwargs)
        return ClientSettings(
            **{
                **settings.__dict__,
                "extra_body": {"logit_bias": {str(nul_token_id()): 30.0}},
            }
        )

    monkeypatch.setattr(lanes, "client_settings", with_bias)
    judge = make_judge(
        llama_server,
        name="llama-nul",
        model=MODEL,
        structured_output="none",
        max_tokens=8,
        max_concurrency=1,
        max_parse_retries=0,
    )
    # when
    run, elapsed = _run(small_audit, judge)
    # then the run finished with every step answered, the NULs stored escaped
    raws = list(JudgeVerdict.objects.filter(run=run).values_list("raw_response", flat=True))
    assert run.status == JudgeRun.Status.DONE and run.done == run.total
    assert sum("\\u0000" in raw for raw in raws) >= run.total / 2
    assert not any("\x00" in raw for raw in raws)
    _record(
        "nul_run",
        {
            "steps": run.total,
            "seconds": round(elapsed, 1),
            "with_nul": sum("\\u0000" in r for r in raws),
        },
    )


def test_a_context_overflow_fails_fast_with_the_servers_reason(llama_server):
    # given a prompt longer than the server's context
    request = JudgeRequest(key="long", messages=[{"role": "user", "content": "x " * N_CTX * 2}])
    settings = ClientSettings(base_url=llama_server, model=MODEL, timeout_s=60, max_retries=6)
    # when
    started = time.monotonic()
    (result,) = judge_many_sync([request], settings=settings)
    elapsed = time.monotonic() - started
    # then one call, a permanent failure, the server's words
    assert not result.ok and result.failure == "context_overflow" and result.attempts == 1
    assert "context" in result.error.lower()
    assert elapsed < 10
    _record("overflow", {"seconds": round(elapsed, 2), "error": result.error[:200]})


def test_the_probe_describes_llama_cpp_python(llama_server):
    # when
    report = probe_sync(
        ClientSettings(
            base_url=llama_server, model="not-the-loaded-one", timeout_s=60, concurrency=8
        )
    )
    # then
    assert report.models == [MODEL] and report.model_served is False
    assert report.modes["json_object_schema"].enforced
    assert not report.modes["json_object"].accepted or not report.modes["json_schema"].enforced
    assert report.n_honoured is False and report.one_at_a_time is True
    assert report.suggested["max_concurrency"] == 1
    _record("probe", format_report(report))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_judge_left_at_json_schema_and_concurrency_4_still_finishes_every_step(
    llama_server, small_audit, make_judge
):
    # given the settings a researcher might leave: OpenAI's json_schema (a 500 from this server)
    # and 4 in flight with a tight timeout against a server that serves one at a time
    judge = make_judge(
        llama_server,
        name="llama-misconfigured",
        model=MODEL,
        structured_output="json_schema",
        temperature=1.0,
        max_tokens=48,
        max_concurrency=4,
        timeout_s=2,
        hedge_hung_calls=False,
    )
    # when
    run, elapsed = _run(small_audit, judge)
    # then the batch stepped down to the schema extension, lowered its concurrency, and every
    # step has its verdict
    records = list(JudgeVerdict.objects.filter(run=run).values_list("prompt_record", flat=True))
    modes = collections.Counter(r.get("structured_output") for r in records)
    kinds = collections.Counter(
        JudgeVerdict.objects.filter(run=run).values_list("verdict", flat=True)
    )
    assert run.status == JudgeRun.Status.DONE and run.done == run.total
    assert modes["json_object_schema"] >= run.total - 4
    assert sum(n for k, n in kinds.items() if k != "invalid") >= run.total / 2
    _record(
        "misconfigured_run",
        {
            "steps": run.total,
            "verdicts": dict(kinds),
            "modes": dict(modes),
            "seconds": round(elapsed, 1),
            "steps_per_s": round(run.total / elapsed, 2),
            "attempts": sum(
                JudgeVerdict.objects.filter(run=run).values_list("attempts", flat=True)
            ),
        },
    )


def test_llama_cpp_python_returns_log_probabilities_the_client_reads(llama_server):
    # given a judge asking for log-probabilities with the verdict schema enforced
    from judges.prompts import DEFAULT_TEMPLATE, render_messages

    steps = ["2 + 2 = 4.", "So the answer is B.", "Hence 7 is even."]
    requests = [
        JudgeRequest(
            key=str(i),
            messages=render_messages(
                DEFAULT_TEMPLATE,
                question="What is 2 + 2?",
                options={"A": "4", "B": "5"},
                context_steps=[],
                step=step,
                categories=["reasoning"],
            ),
            max_tokens=48,
            temperature=1.0,
        )
        for i, step in enumerate(steps)
    ]
    settings = ClientSettings(
        base_url=llama_server,
        model=MODEL,
        timeout_s=60,
        concurrency=1,
        structured_output="json_object_schema",
        max_parse_retries=0,
        logprobs=True,
        top_logprobs=20,
    )
    # when
    results = judge_many_sync(requests, settings=settings)
    # then the server took the parameter and sent them back for every parsed answer
    assert all(r.ok and r.logprobs_refused is None for r in results)
    parsed = [r for r in results if r.verdict != "invalid"]
    assert parsed and all(len(r.sample_error_probabilities) == 1 for r in parsed)
    _record(
        "logprobs",
        {r.key: [r.verdict, r.sample_error_probabilities] for r in results},
    )
