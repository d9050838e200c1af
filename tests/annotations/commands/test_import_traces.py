import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotations.models import Audit, Trace

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "docs" / "examples"
pytestmark = pytest.mark.django_db


def test_import_creates_the_audit_and_reports_counts(capsys):
    # when
    call_command(
        "import_traces",
        str(EXAMPLES / "traces.jsonl"),
        "--audit",
        "cli",
        "--create",
        "--segmenter",
        "given,sentences",
        "--no-progress",
    )
    # then
    out = capsys.readouterr().out
    assert "Imported 60 traces" in out
    assert "segmentations: given, sentences" in out
    assert Audit.objects.get(slug="cli").traces.count() == 60


def test_csv_example_imports():
    call_command(
        "import_traces", str(EXAMPLES / "traces.csv"), "--audit", "csv", "--create", "--no-progress"
    )
    assert Trace.objects.filter(audit__slug="csv").count() == 6


def test_missing_audit_without_create_is_an_error():
    with pytest.raises(CommandError, match="no audit 'nope'; pass --create"):
        call_command("import_traces", str(EXAMPLES / "traces.jsonl"), "--audit", "nope")


def test_a_bad_file_lists_problems_on_stderr_and_writes_nothing(tmp_path, capsys):
    # given
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": "q1"}\nnot json\n')
    # when
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_traces", str(bad), "--audit", "x", "--create")
    # then
    err = capsys.readouterr().err
    assert f"{bad}: line 1 (question): is required" in err
    assert f"{bad}: line 2, column 1: invalid JSON" in err
    assert not Trace.objects.exists()


def test_the_command_exits_non_zero_on_a_bad_file(tmp_path):
    # A real process, as an admin's script would run it: exit status and stderr.
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": "sqlite:///" + str(tmp_path / "db.sqlite3"),
        "STEPAUDIT_VAR_DIR": str(tmp_path),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "import_traces", str(bad), "--audit", "x", "--create"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1
    assert "line 1: the header lacks column(s) question_id, question" in result.stderr
    assert "Traceback" not in result.stderr


def test_add_user_prints_a_generated_password_and_takes_one_from_env(monkeypatch, capsys):
    from django.contrib.auth import authenticate

    call_command("add_user", "alice", "--role", "clinician")
    password = capsys.readouterr().out.strip().rsplit(" ", 1)[1]
    assert len(password) >= 12
    assert authenticate(username="alice", password=password) is not None

    monkeypatch.setenv("BOB_PW", "a-long-secret-phrase")
    call_command("add_user", "bob", "--role", "researcher", "--password-env", "BOB_PW")
    assert "a-long-secret-phrase" not in capsys.readouterr().out
    assert authenticate(username="bob", password="a-long-secret-phrase") is not None


def test_add_user_with_empty_env_is_an_error(monkeypatch):
    monkeypatch.delenv("NOPE_PW", raising=False)
    with pytest.raises(CommandError, match="NOPE_PW is empty or unset"):
        call_command("add_user", "carol", "--role", "admin", "--password-env", "NOPE_PW")


def test_seed_demo_is_idempotent_and_prints_the_same_accounts(tmp_path, capsys):
    creds = tmp_path / "accounts.txt"
    call_command("seed_demo", "--credentials-file", str(creds))
    first = capsys.readouterr().out
    call_command("seed_demo", "--credentials-file", str(creds))
    second = capsys.readouterr().out
    assert first == second
    assert "Demo audit 'demo': 60 traces" in first
    for name in ("admin", "researcher", "clinician1", "clinician2"):
        assert name in first
    assert Audit.objects.filter(slug="demo").count() == 1
    assert json.dumps(first)  # printable


def test_demo_passwords_are_generated_not_hard_coded(tmp_path):
    # given a first seed, and a second one that has lost its credentials file
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    call_command("seed_demo", "--credentials-file", str(a))
    call_command("seed_demo", "--credentials-file", str(b))
    # then the accounts got fresh random passwords, and the printed ones work
    from django.contrib.auth import authenticate

    assert a.read_text() != b.read_text()
    for line in b.read_text().splitlines():
        username, password = line.split("\t")
        assert authenticate(username=username, password=password) is not None
