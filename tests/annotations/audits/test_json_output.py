"""--json on every command that creates something: one JSON object with the ids it made, and
nothing else on stdout (the prose goes to stderr)."""

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from annotations.models import Assignment, Audit, Batch, Trace
from judges.models import Judge, JudgeRun

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "docs" / "examples"
pytestmark = pytest.mark.django_db


def _json(*args) -> tuple[dict, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()  # raises unless stdout is JSON alone


def test_import_traces_json_lists_the_traces_it_made():
    # when a new audit is created by the import, with --json
    made, prose = _json(
        "import_traces", str(EXAMPLES / "traces.jsonl"), "--audit", "j", "--create",
        "--no-progress", "--json",
    )  # fmt: skip
    # then the ids are those of the audit and of exactly the traces it imported
    audit = Audit.objects.get(slug="j")
    assert made["audit_id"] == audit.pk and made["audit_created"] is True
    assert made["trace_ids"] == list(audit.traces.order_by("pk").values_list("pk", flat=True))
    assert made["traces"] == 60 and made["steps"] == audit.steps.count()
    assert "Imported 60 traces" in prose
    # when it runs again skipping what exists: nothing new, and it says so
    again, _ = _json(
        "import_traces", str(EXAMPLES / "traces.jsonl"), "--audit", "j", "--skip-existing",
        "--no-progress", "--json",
    )  # fmt: skip
    assert again["trace_ids"] == [] and again["skipped"] == 60
    assert again["audit_created"] is False and Trace.objects.count() == 60


def test_create_batch_and_add_user_json(demo_audit):
    # given two clinicians made with --json
    users = [_json("add_user", name, "--role", "clinician", "--json")[0] for name in ("c1", "c2")]
    # then each JSON names the account, with the password generated for it
    for made in users:
        user = get_user_model().objects.get(pk=made["user_id"])
        assert made["username"] == user.username and made["role"] == "clinician"
        assert user.check_password(made["password"])
    # when a batch is made and assigned with --json
    made, prose = _json(
        "create_batch", "--audit", demo_audit.slug, "--size", "12", "--annotators", "c1,c2",
        "--confirm-leak", "--json",
    )  # fmt: skip
    # then it carries the batch and assignment ids; the strata went to stderr
    batch = Batch.objects.get(pk=made["batch_id"])
    assert made["batch"] == batch.name
    assert sorted(a["id"] for a in made["assignments"]) == sorted(
        Assignment.objects.filter(batch=batch).values_list("public_id", flat=True)
    )
    assert "population" in prose
    # a dry run stores nothing and says so in JSON
    dry, _ = _json("create_batch", "--audit", demo_audit.slug, "--size", "5", "--dry-run", "--json")
    assert dry == {"batch_id": None, "dry_run": True} and Batch.objects.count() == 1


def test_judge_commands_json(demo_audit):
    # when the example judge is created and a run started (no worker needed to create it)
    judge, _ = _json("create_judge", str(EXAMPLES / "judge.json"), "--json")
    run, _ = _json(
        "run_judge", "--audit", demo_audit.slug, "--judge", "local-judge", "--segmentation",
        "given", "--json",
    )  # fmt: skip
    # then the ids are the judge's, its prompt's and the run's
    stored = Judge.objects.get(pk=judge["judge_id"])
    assert judge["judge"] == stored.name and judge["prompt_id"] == stored.prompt_id
    assert JudgeRun.objects.get(pk=run["run_id"]).judge_id == stored.pk
    assert run["steps"] > 0


@pytest.mark.django_db(transaction=True)
def test_manage_py_prints_only_the_json_on_stdout(child_env, tmp_path):
    # given a real manage.py process on the test database (app start-up banners included)
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"slug": "proc", "name": "From a process"}))
    # when create_audit runs with --json
    done = subprocess.run(
        [sys.executable, "manage.py", "create_audit", str(path), "--json"],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # then stdout is exactly one JSON line with the new audit's id
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert json.loads(done.stdout)["audit_id"] == Audit.objects.get(slug="proc").pk
