"""The capability probe: ``manage.py judge_check``, the API and the judge page (issue 14)."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from judges.clients.fake_server import fake_server
from judges.clients.probe import probe_sync
from judges.rendering import client_settings

pytestmark = pytest.mark.django_db


def _login(client, user):
    client.login(username=user.username, password=user.raw_password)


def test_the_probe_tells_a_llama_cpp_python_server_from_a_vllm_one(make_judge):
    # given the two servers' behaviours
    with fake_server(profile="llama-cpp-python", latency_ms=30, jitter_ms=0) as llama:
        report_llama = probe_sync(client_settings(make_judge(llama.base_url, max_concurrency=8)))
    with fake_server(profile="vllm", latency_ms=30, jitter_ms=0) as vllm:
        report_vllm = probe_sync(
            client_settings(make_judge(vllm.base_url, model="fake-judge", max_concurrency=8))
        )
    # then llama-cpp-python: json_schema refused, its schema extension enforced, n ignored, one
    # request at a time, the configured model not among those served
    assert not report_llama.modes["json_schema"].accepted
    assert report_llama.modes["json_object_schema"].enforced
    assert (
        report_llama.modes["guided_json"].accepted
        and not report_llama.modes["guided_json"].enforced
    )
    assert report_llama.model_served is False and report_llama.models == ["local-model"]
    assert report_llama.n_honoured is False
    assert report_llama.one_at_a_time is True
    assert report_llama.suggested["structured_output"] == "json_object_schema"
    assert report_llama.suggested["max_concurrency"] == 1
    # and vLLM: json_schema enforced, n honoured, calls served in parallel, model served
    assert report_vllm.modes["json_schema"].enforced and report_vllm.model_served is True
    assert report_vllm.n_honoured is True and report_vllm.one_at_a_time is False
    assert report_vllm.cached_reported and report_vllm.usage_reported
    # and both return token log-probabilities, the verdict's read from them
    assert report_llama.logprobs == report_vllm.logprobs == "returned"
    assert report_vllm.logprobs_error_probability is not None
    assert report_vllm.suggested == {
        "structured_output": "json_schema",
        "max_concurrency": 8,
        "timeout_s": 10.0,
    }


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [("logprobs_unsupported", "refused (400"), ("logprobs_ignored", "ignored")],
)
def test_the_probe_says_when_a_server_has_no_log_probabilities(make_judge, behaviour, expected):
    with fake_server(latency_ms=1, jitter_ms=0, **{behaviour: True}) as server:
        report = probe_sync(client_settings(make_judge(server.base_url)))
    assert report.logprobs.startswith(expected)
    assert report.logprobs_error_probability is None
    assert any("token log-probabilities" in note for note in report.notes)


def test_judge_check_prints_the_report_and_what_differs_from_the_spec(make_judge):
    # given a judge on a one-slot server configured for 8 at a time
    with fake_server(profile="llama-cpp-python", latency_ms=20, jitter_ms=0) as server:
        judge = make_judge(server.base_url, model="local-model")
        out = StringIO()
        # when
        call_command("judge_check", judge.name, stdout=out)
        as_json = StringIO()
        call_command("judge_check", judge.name, "--json", stdout=as_json)
    # then
    text = out.getvalue()
    assert "json_object_schema  enforced" in text and "(one request at a time)" in text
    assert "max_concurrency: 8 → 1" in text and "n: asked 3, got 1 (ignored)" in text
    assert json.loads(as_json.getvalue())["suggested"]["max_concurrency"] == 1


def test_judge_check_errors_are_one_line():
    # when / then
    with pytest.raises(CommandError, match="no judge named 'nope'"):
        call_command("judge_check", "nope")


def test_the_probe_goes_through_the_egress_policy(make_judge, fake):
    # given a judge whose host the deployment no longer allows
    judge = make_judge(fake.base_url)
    fake.reset()
    # when / then it is refused before any request
    with (
        override_settings(STEPAUDIT_JUDGE_ALLOWED_HOSTS=["api.openai.com"]),
        pytest.raises(CommandError, match="judge configuration"),
    ):
        call_command("judge_check", judge.name)
    assert fake.stats()["requests"] == 0


def test_the_api_and_the_judge_page_run_the_probe_for_researchers_only(
    client, api_client, researcher, clinician, make_judge
):
    with fake_server(profile="vllm", latency_ms=5, jitter_ms=0) as server:
        judge = make_judge(server.base_url, model="fake-judge")
        # when a clinician asks, then refused
        _login(api_client, clinician)
        assert api_client.post(f"/api/judges/{judge.name}/check/").status_code == 403
        # when a researcher asks through the API and the page's button
        _login(api_client, researcher)
        response = api_client.post(f"/api/judges/{judge.name}/check/")
        _login(client, researcher)
        page = client.get(f"/judges/judge/{judge.name}/")
        checked = client.post(f"/judges/judge/{judge.name}/")
        missing = api_client.post("/api/judges/nope/check/")
    # then
    assert response.status_code == 200 and response.json()["modes"]["json_schema"]["enforced"]
    assert page.status_code == 200 and b'data-action="judge-check"' in page.content
    assert checked.status_code == 200 and b"Capability report" in checked.content
    assert b"json_schema" in checked.content and b"suggested: structured_output" in checked.content
    assert missing.status_code == 404


def test_a_spec_names_its_structured_output_mode_and_a_wrong_one_is_refused(
    api_client, researcher, fake
):
    # given
    _login(api_client, researcher)
    spec = {"name": "modes", "base_url": fake.base_url, "model": "fake-judge"}
    # when
    good = api_client.post(
        "/api/judges/", {**spec, "structured_output": "json_schema"}, format="json"
    )
    bad = api_client.post("/api/judges/", {**spec, "structured_output": "xml"}, format="json")
    # then
    assert good.status_code == 201 and good.json()["structured_output"] == "json_schema"
    assert bad.status_code == 400 and bad.json()["extra"]["field"] == "structured_output"
    assert "judge_check" in bad.json()["message"]


def test_the_run_page_shows_prompt_and_cached_tokens_per_step(
    client, researcher, demo_audit, make_judge, run_chunks
):
    from judges.services import run_create

    # given a run on a server that reports cached prompt tokens
    with fake_server(latency_ms=0, jitter_ms=0, report_cached=True) as server:
        judge = make_judge(server.base_url, max_concurrency=1)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        run_chunks(run)
    run.refresh_from_db()
    # when
    _login(client, researcher)
    page = client.get(f"/judges/audits/{demo_audit.slug}/runs/").content.decode()
    # then
    assert run.cached_tokens > 0
    per_step = round(run.prompt_tokens / run.done)
    assert f'data-field="prompt-per-step">{per_step}<' in page
    assert f'data-field="cached-per-step">{round(run.cached_tokens / run.done)}<' in page


def test_a_server_that_is_down_is_reported_not_raised(make_judge):
    # given a judge pointing at a port nobody listens on
    from judges.clients.fake_server import free_port

    judge = make_judge(f"http://127.0.0.1:{free_port()}/v1")
    # when
    report = probe_sync(client_settings(judge))
    # then
    assert report.models is None and "127.0.0.1" in report.models_error
    assert not any(r.accepted for r in report.modes.values())
    assert any("answered no chat completion" in note for note in report.notes)
    assert report.suggested["structured_output"] == "none"
