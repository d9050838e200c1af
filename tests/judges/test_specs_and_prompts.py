"""Judge specs (validation names the field at fault) and prompt versions (immutable once used)."""

import json

import pytest
from django.core.management import CommandError, call_command

from judges.models import Judge, JudgePrompt
from judges.services import (
    JudgeSpecError,
    judge_create_or_update,
    prompt_update,
    prompt_version_create,
    run_create,
)

pytestmark = pytest.mark.django_db

BASE = {"name": "j1", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"base_url": None}, "base_url", id="base_url-wrong-type"),
        pytest.param({"base_url": "ftp://x"}, "base_url", id="base_url-not-http"),
        pytest.param({"temperature": 3}, "temperature", id="temperature-range"),
        pytest.param({"max_concurrency": True}, "max_concurrency", id="bool-is-not-int"),
        pytest.param({"max_concurrency": 0}, "max_concurrency", id="concurrency-zero"),
        pytest.param({"api_key_env": "sk-abcdef0123456789"}, "api_key_env", id="a-key-not-a-name"),
        pytest.param({"context_mode": "everything"}, "context_mode", id="context-mode"),
        pytest.param({"colour": "blue"}, "colour", id="unknown-field"),
        pytest.param({"prompt": {"name": "p"}}, "prompt.user", id="prompt-without-user"),
        pytest.param(
            {"prompt": {"name": "p", "user": "Judge $step of $condition"}},
            "prompt",
            id="prompt-unknown-placeholder",
        ),
        pytest.param({"name": "has space"}, "name", id="name-chars"),
        pytest.param({"hedge_hung_calls": "no"}, "hedge_hung_calls", id="hedging-not-bool"),
        pytest.param({"logprobs": "yes"}, "logprobs", id="logprobs-not-bool"),
        pytest.param({"top_logprobs": 0}, "top_logprobs", id="top-logprobs-zero"),
        pytest.param({"top_logprobs": 21}, "top_logprobs", id="top-logprobs-over-20"),
        pytest.param({"top_logprobs": 5.0}, "top_logprobs", id="top-logprobs-not-int"),
        pytest.param({"top_logprobs": True}, "top_logprobs", id="top-logprobs-bool"),
    ],
)
def test_an_invalid_spec_is_rejected_naming_the_field(change, field):
    # given
    spec = {**BASE, **change}
    # when
    with pytest.raises(JudgeSpecError) as caught:
        judge_create_or_update(spec=spec)
    # then
    assert caught.value.field == field
    assert caught.value.message.startswith(field)
    assert not Judge.objects.exists()


def test_hedging_of_hung_calls_is_the_judges_choice():
    # given a judge that keeps the default and one that turns hedging off (a paid API)
    from judges.rendering import client_settings

    default = judge_create_or_update(spec=BASE)
    paid = judge_create_or_update(spec={**BASE, "name": "paid", "hedge_hung_calls": False})
    # when
    on, off = client_settings(default), client_settings(paid)
    # then the client hedges for the first only (0 turns the client's hedging off)
    assert default.hedge_hung_calls and on.hedge_after_latencies > 0
    assert not paid.hedge_hung_calls and off.hedge_after_latencies == 0


def test_log_probabilities_are_the_judges_choice_and_part_of_its_version(demo_audit):
    # given a judge that keeps the default and one that asks for log-probabilities
    from judges.rendering import client_settings

    plain = judge_create_or_update(spec=BASE)
    asking = judge_create_or_update(
        spec={**BASE, "name": "lp", "logprobs": True, "top_logprobs": 5}
    )
    # when
    off, on = client_settings(plain), client_settings(asking)
    # then
    assert not plain.logprobs and plain.top_logprobs == 10 and not off.logprobs
    assert on.logprobs and on.top_logprobs == 5
    # and once used, turning them off makes a new version that says so
    run_create(audit=demo_audit, judge=asking, segmentation="given")
    again = judge_create_or_update(spec={**BASE, "name": "lp", "top_logprobs": 5})
    assert again.version == 2 and not again.logprobs
    assert asking.settings_record()["logprobs"] is True


def test_a_missing_required_field_is_named():
    # when
    with pytest.raises(JudgeSpecError) as caught:
        judge_create_or_update(spec={"name": "x", "base_url": "http://h/v1"})
    # then
    assert caught.value.field == "model"


def test_the_example_spec_creates_a_judge_with_the_default_prompt(tmp_path):
    # when
    call_command("create_judge", "docs/examples/judge.json")
    # then
    judge = Judge.objects.get(name="local-judge")
    assert judge.prompt.name == "step-default" and judge.prompt.version == 1
    assert judge.api_key_env == ""


def test_create_judge_reads_yaml_and_reports_the_field_at_fault(tmp_path):
    # given
    good = tmp_path / "judge.yaml"
    good.write_text("name: yaml-judge\nbase_url: http://127.0.0.1:1/v1\nmodel: m\n")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**BASE, "timeout_s": -1}))
    # when
    call_command("create_judge", str(good))
    with pytest.raises(CommandError, match=r"^timeout_s: must be"):
        call_command("create_judge", str(bad))
    # then
    assert Judge.objects.filter(name="yaml-judge").exists()


def test_running_create_judge_twice_updates_in_place():
    # given
    judge_create_or_update(spec=BASE)
    # when
    judge = judge_create_or_update(spec={**BASE, "max_concurrency": 32})
    # then
    assert Judge.objects.count() == 1 and judge.max_concurrency == 32
    assert JudgePrompt.objects.count() == 1


def test_a_used_prompt_is_immutable_and_a_change_makes_a_new_version(demo_audit):
    # given a prompt used by a run
    spec = {**BASE, "prompt": {"name": "mine", "user": "Is this right? <step>$step</step>"}}
    judge = judge_create_or_update(spec=spec)
    prompt = judge.prompt
    run_create(audit=demo_audit, judge=judge, segmentation="given")
    prompt.refresh_from_db()
    assert prompt.used_at is not None
    # when edited in place, through the service or the model
    with pytest.raises(Exception, match="cannot change"):
        prompt_update(prompt=prompt, system_template="", user_template="New $step")
    prompt.user_template = "New $step"
    with pytest.raises(Exception, match="cannot change"):
        prompt.save()
    # when the spec changes the template
    spec["prompt"]["user"] = "Is this step right? <step>$step</step>"
    judge = judge_create_or_update(spec=spec)
    # then
    assert judge.prompt.version == 2 and judge.prompt.pk != prompt.pk
    assert JudgePrompt.objects.get(pk=prompt.pk).user_template.startswith("Is this right?")


def test_an_unused_prompt_version_is_edited_in_place():
    # given
    first = prompt_version_create(name="p", system_template="", user_template="A $step")
    # when
    second = prompt_version_create(name="p", system_template="", user_template="B $step")
    # then
    assert first.pk == second.pk and second.version == 1
    assert second.user_template == "B $step"
