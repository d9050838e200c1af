import pytest
from django.core.management import CommandError, call_command

from annotations.models import Step
from judges.models import Judge, JudgeRun, JudgeVerdict

pytestmark = pytest.mark.django_db


def test_demo_judges_seed_is_idempotent_and_carries_every_reference_verdict(tmp_path, capsys):
    # given the demo audit
    call_command("seed_demo", "--credentials-file", str(tmp_path / "accounts.txt"))
    # when the demo judges are seeded twice
    call_command("seed_demo_judges")
    call_command("seed_demo_judges")
    # then one LLM judge on the local fake server and one finished reference run exist
    out = capsys.readouterr().out
    assert "Demo judges: judge demo-judge, reference run" in out
    assert "Demo judges: already there" in out
    judge = Judge.objects.get(name="demo-judge")
    assert judge.base_url.startswith("http://127.0.0.1:")
    assert not judge.api_key_env
    run = JudgeRun.objects.get(mode=JudgeRun.Mode.REFERENCE)
    expected = Step.objects.filter(
        audit__slug="demo", segmentation="given", reference_verdict__isnull=False
    ).count()
    assert expected > 0
    assert JudgeVerdict.objects.filter(run=run).count() == expected


def test_demo_judges_need_the_demo_audit():
    with pytest.raises(CommandError, match=r"run `python manage\.py seed_demo` first"):
        call_command("seed_demo_judges")
