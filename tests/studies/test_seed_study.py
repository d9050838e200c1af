"""The seed study end to end, as a researcher runs it from files and links alone (no Django
admin, no shell): create_audit from docs/examples, import_traces, create_batch, add_users for
the admin, create_study_link --json; then participants go through the link over HTTP
(consent, practice with feedback, ratings with attention checks, questionnaire, completion
code); then the study page, its CSV and agreement_report --audit SLUG --json.

The bench-scale variant (100 participants) runs with STEPAUDIT_SEED_STUDY_N=100; the default
(24 participants, a multiple of the square's four rows) does the same checks in a fraction of
the time.
"""

import csv
import io
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
N = int(os.environ.get("STEPAUDIT_SEED_STUDY_N", "24"))
CODE = "SEED2026"
BASE = "https://study.example"


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _study_file() -> dict:
    import yaml

    return yaml.safe_load((EXAMPLES / "study_likert.yaml").read_text())


def _fails_both(i: int) -> bool:
    return i % 8 == 3  # flagged: more failures than the study's one allowed


def _fails_one(i: int) -> bool:
    return i % 8 == 6  # one failure: forgiven, stays in


def _likert(values: dict) -> dict:
    return {f"likert-{k}": v for k, v in values.items()}


def _participant_run(link: str, pid: str, i: int, study: dict, checks: dict, *, stop_at=None):
    """One participant through the link; returns the item numbers that were checks."""
    client = Client()
    entry = client.get(f"{link}?PROLIFIC_PID={pid}")
    assert entry.status_code == 200, entry.content[:300]
    response = client.post(f"{link}consent/", {"platform_id": pid, "decision": "accept"})
    assert response.status_code == 302 and response["Location"].endswith("/instructions/")
    response = client.post(response["Location"], follow=True)
    # practice, with feedback on the answer given
    for number, item in enumerate(study["practice"], start=1):
        assert response.request["PATH_INFO"].endswith(f"/practice/{number}/")
        expected = item["answers"]
        given = {"interpretability": 4, "cognitive_load": 4}
        feedback = client.post(response.request["PATH_INFO"], _likert(given) | {"shown_at": "0"})
        body = feedback.content.decode()
        assert feedback.status_code == 200 and item["feedback"] in body
        key = next(iter(expected))
        assert f"expected {expected[key]}, you chose {given[key]}" in body
        next_url = re.search(r'href="([^"]+)">Continue', body).group(1)
        response = client.get(next_url, follow=True)
    seen_checks = []
    failed = 0
    while "/items/" in response.request["PATH_INFO"]:
        number = int(response.request["PATH_INFO"].rstrip("/").rsplit("/", 1)[1])
        if stop_at is not None and number == stop_at:
            return seen_checks
        body = response.content.decode()
        check = next((c for c in checks.values() if c["text"].split("\n")[1] in body), None)
        if check is not None:
            seen_checks.append(number)
            wrong = _fails_both(i) or (_fails_one(i) and failed == 0)
            answers = dict(check["answers"])
            if wrong:
                answers["interpretability"] = 4
                failed += 1
        else:
            # A made-up but consistent rating: the trace type shows in the Likert means.
            answers = {"interpretability": 2 + i % 3, "cognitive_load": 3 + number % 3}
        response = client.post(
            response.request["PATH_INFO"], _likert(answers) | {"shown_at": "0"}, follow=True
        )
        assert response.status_code == 200
    assert response.request["PATH_INFO"].endswith("/questionnaire/")
    done = client.post(
        response.request["PATH_INFO"],
        {"q-background": "no", "q-effort": "3", "q-remarks": ""},
        follow=True,
    )
    assert done.status_code == 200 and CODE in done.content.decode()
    return seen_checks


def test_the_seed_study_runs_from_files_and_links_alone(tmp_path):
    # given the audit, its traces (four types) and a batch, made by the commands
    audit = json.loads(_run("create_audit", str(EXAMPLES / "audit_likert.yaml"), "--json"))
    slug = audit.get("slug", "trace-interpretability")
    _run("import_traces", str(EXAMPLES / "traces_rating.jsonl"), "--audit", slug)
    batch_args = ["--audit", slug, "--size", "16", "--stratify-by-trace-type", "--name", "wave-1"]
    batch = json.loads(_run("create_batch", *batch_args, "--json"))
    assert batch["batch"] == "wave-1"
    # an admin made from a CSV, who signs in through the one-time link
    people = tmp_path / "people.csv"
    people.write_text("username,role\nresearch-lead,admin\n")
    made = json.loads(_run("add_users", str(people), "--json", "--base-url", BASE))
    (row,) = csv.DictReader(io.StringIO(Path(made["links_file"]).read_text()))
    admin = Client()
    password = "a-long-pass-phrase-9"
    signed_in = admin.post(
        row["sign_in_url"].removeprefix(BASE), {"password1": password, "password2": password}
    )
    assert signed_in.status_code == 302
    # and the study link, from the study file
    link_args = [
        *("--audit", slug, "--batch", "wave-1", "--capacity", str(N + 2)),
        *("--study", str(EXAMPLES / "study_likert.yaml"), "--completion-code", CODE),
        *("--base-url", BASE),
    ]
    link = json.loads(_run("create_study_link", *link_args, "--json"))
    path = link["url"].removeprefix(BASE).split("?")[0]
    study = _study_file()
    checks = {c["position"]: c for c in study["attention_checks"]}

    # when three visitors decline, N participants complete and two stop half-way
    for d in range(3):
        pid = f"decline{d}"
        assert Client().get(f"{path}?PROLIFIC_PID={pid}").status_code == 200
        declined = Client().post(f"{path}consent/", {"platform_id": pid, "decision": "decline"})
        assert declined.status_code == 200
    check_places = set()
    for i in range(N):
        check_places.update(_participant_run(path, f"pid{i:03d}", i, study, checks))
    for d in range(2):
        _participant_run(path, f"stop{d}", d, study, checks, stop_at=4)

    # then the checks sat at their set places and looked like items
    assert check_places == set(checks)
    from studies.models import Participant

    flagged = sorted(f"pid{i:03d}" for i in range(N) if _fails_both(i))
    forgiven = sorted(f"pid{i:03d}" for i in range(N) if _fails_one(i))
    excluded = Participant.objects.filter(excluded_at__isnull=False)
    assert sorted(excluded.values_list("platform_id", flat=True)) == flagged
    assert all(
        p.attention_failures == 1 and p.excluded_at is None
        for p in Participant.objects.filter(platform_id__in=forgiven)
    )
    # every trace type equally often at each position among the N (in enrolment order)
    per_position: dict[int, Counter] = defaultdict(Counter)
    for p in Participant.objects.filter(platform_id__startswith="pid").select_related("assignment"):
        for item in p.assignment.items.select_related("batch_item__trace"):
            per_position[item.position][item.batch_item.trace.trace_type] += 1
    assert len(per_position) == 16
    assert all(set(c.values()) == {N // 4} and len(c) == 4 for c in per_position.values())

    # the study page counts them
    page = admin.get(f"/studies/{slug}/").content.decode()

    def shown(name: str) -> int:
        return int(re.search(rf'id="n-{name}"[^>]*>\s*(\d+)', page).group(1))

    assert shown("completed") == N and shown("excluded") == len(flagged)
    assert shown("enrolled") == N + 2 and shown("declined") == 3
    # the CSV has a row each, with the attention-check results
    exported = admin.get(f"/studies/{slug}/participants.csv").content.decode()
    rows = list(csv.DictReader(io.StringIO(exported)))
    by_id = {r["platform_id"]: r for r in rows}
    assert len(rows) == N + 2 and sum(r["status"] == "completed" for r in rows) == N
    assert [r["platform_id"] for r in rows if r["excluded"] == "1"] == flagged
    assert by_id[flagged[0]]["attention_checks"] == "5:fail 12:fail"
    assert by_id["pid000"]["attention_checks"] == "5:pass 12:pass"
    assert by_id["stop0"]["stopped_at"] == "item 4"

    # and the report has the Likert analysis without the flagged, who are listed
    out = tmp_path / "report.json"
    call_command("agreement_report", "--audit", slug, "--format", "json", "--out", str(out))
    report = json.loads(out.read_text())
    listed = sorted(p["platform_id"] for p in report["exclusions"]["participants"])
    assert listed == flagged
    kept_raters = N - len(flagged)
    likert = report["likert"]
    assert {r["trace_type"] for r in likert["rows"]} == {
        "chain-of-thought",
        "structured",
        "summary",
        "worked-example",
    }
    by_item = defaultdict(int)
    for r in likert["rows"]:
        by_item[r["item"]] += r["n"]
    # 16 traces per kept participant, and the three ratings of each who stopped at item 4
    assert dict(by_item) == {
        "interpretability": kept_raters * 16 + 2 * 3,
        "cognitive_load": kept_raters * 16 + 2 * 3,
    }
