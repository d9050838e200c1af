"""The seed step study end to end, as a researcher runs it: files, commands and the API only.

A 3-arm step audit (verifiable traces: every step carries a reference verdict), two judges on
real Celery workers against the fake endpoint as a process, a 150-step expert sample labelled
through the clinician API, and the report from ``agreement_report --audit --json``. The
report's numbers are then recomputed independently from the database: expert and judge error
rates with pandas, PPI's point estimate with ppi_py (the recorded inclusion weights), and the
trace-correct x answer-correct test with scipy.
"""

import io
import json

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.db.models import F
from scipy import stats

pytestmark = [
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

ARMS = {"teacher": 0.12, "student-before": 0.22, "student-after": 0.34}
QUESTIONS = 40
STEPS = 6
AUDIT_FILE = """\
slug: seed-steps
kind: step_labels
name: "Seed study: distillation (internal)"
annotator_title: Step review
guidelines: Mark a step **error** if it is wrong.
error_categories: [factual error, other]
normaliser_version: norm-v2
probe_arms:
  - {label: Source 1, condition: teacher}
  - {label: Source 2, condition: student-before}
  - {label: Source 3, condition: student-after}
probe_mode: "off"
hidden_repeat_share: 0
seed: seed-steps-2026
"""


def _traces(rng) -> list[dict]:
    """Verifiable traces: error steps carry the fake judge's ``[wrong]`` marker 80 % of the
    time (and 5 % of correct steps do), so the marker judge is a realistic, imperfect one."""
    records = []
    for arm, rate in ARMS.items():
        for q in range(QUESTIONS):
            steps = []
            for s in range(STEPS):
                wrong = bool(rng.random() < rate)
                marked = rng.random() < (0.8 if wrong else 0.05)
                text = f"Step {s} of question {q}: the finding number {rng.integers(1e6)} holds."
                steps.append(
                    {
                        "text": text + (" [wrong]" if marked else ""),
                        "reference_verdict": "error" if wrong else "correct",
                    }
                )
            flawless = all(st["reference_verdict"] == "correct" for st in steps)
            right = rng.random() < (0.85 if flawless else 0.55)
            records.append(
                {
                    "question_id": f"q{q:02d}",
                    "question": f"Question {q}: which option?",
                    "options": {"A": "one", "B": "two"},
                    "gold_answer": "A",
                    "final_answer": "A" if right else "B",
                    "dataset": "bench-1" if q % 2 else "bench-2",
                    "condition": arm,
                    "trace_id": f"{arm}-{q}",
                    "trace": "\n".join(st["text"] for st in steps),
                    "steps": steps,
                }
            )
    return records


def _json(command: str, *args: str) -> dict:
    out = io.StringIO()
    call_command(command, *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_the_seed_step_study_runs_from_files_and_reports_numbers_an_independent_recompute_gives(
    tmp_path, celery_worker_process, fake_process, clinician
):
    from rest_framework.test import APIClient

    from annotations.models import AssignmentItem, BatchItem, Step, Trace
    from judges.models import JudgeVerdict

    rng = np.random.default_rng(2026)
    # given the researcher's files
    (tmp_path / "audit.yaml").write_text(AUDIT_FILE)
    with (tmp_path / "traces.jsonl").open("w") as f:
        for record in _traces(rng):
            f.write(json.dumps(record) + "\n")
    marker_url = fake_process("--latency-ms", "1")
    noise_url = fake_process("--latency-ms", "1", "--verdict-policy", "hash:0.3")
    for name, url in (("marker-judge", marker_url), ("noise-judge", noise_url)):
        spec = {"name": name, "base_url": url, "model": "fake-judge", "max_concurrency": 8,
                "timeout_s": 5, "max_retries": 3}  # fmt: skip
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    celery_worker_process(queues="judges")

    # when the study is set up and run through the commands
    _json("create_audit", str(tmp_path / "audit.yaml"))
    _json("import_traces", str(tmp_path / "traces.jsonl"), "--audit", "seed-steps")
    for name in ("marker-judge", "noise-judge"):
        _json("create_judge", str(tmp_path / f"{name}.json"))
        call_command(
            "run_judge", "--audit", "seed-steps", "--judge", name, "--wait", "--poll-s", "0.3",
            stdout=io.StringIO(),
        )  # fmt: skip
    batch = _json(
        "create_batch", "--audit", "seed-steps", "--size", "150", "--annotators",
        clinician.username, "--name", "experts",
    )  # fmt: skip
    assert [a["annotator"] for a in batch["assignments"]] == [clinician.username]

    # and the clinician labels every item through the API (the truth, 5 % flipped)
    client = APIClient()
    client.force_authenticate(clinician)
    assignment = batch["assignments"][0]["id"]
    listed = client.get("/api/my/assignments/").json()
    assert assignment in json.dumps(listed)
    items = AssignmentItem.objects.filter(assignment__public_id=assignment)
    steps_of_audit = Step.objects.filter(audit__slug="seed-steps")
    truth = dict(steps_of_audit.values_list("pk", "reference_verdict"))
    for item in items.select_related("batch_item"):
        verdict = truth[item.batch_item.step_id]
        if rng.random() < 0.05:
            verdict = "correct" if verdict == "error" else "error"
        response = client.put(
            f"/api/my/assignments/{assignment}/items/{item.position}/label/",
            {"verdict": verdict, "error_category": "other" if verdict == "error" else ""},
            format="json",
        )  # fmt: skip
        assert response.status_code == 200, response.content
    assert client.post(f"/api/my/assignments/{assignment}/submit/").status_code == 200

    out = tmp_path / "report.json"
    call_command("agreement_report", "--audit", "seed-steps", "--resamples", "500", "--out", out)
    report = json.loads(out.read_text())
    print(sorted(report))

    # then: every section is there and says what it used
    assert report["findings"], report.keys()

    # expert error rates (Hájek with the recorded inclusion probabilities) recomputed
    from annotations.models import Label

    labels = pd.DataFrame(
        Label.objects.filter(assignment__public_id=assignment).values(
            "verdict",
            sid=F("step_id"),
            condition=F("step__trace__condition__blind_code"),
            pi=F("assignment_item__batch_item__inclusion_probability"),
        )
    )
    assert len(labels) == 150
    labels["y"] = (labels["verdict"] == "error").astype(float)
    labels["w"] = 1 / labels["pi"]
    expert_rates = labels.groupby("condition").apply(lambda g: np.sum(g.w * g.y) / np.sum(g.w))
    rows = {(r["evaluator"], r["condition"]): r for r in report["error_rates"] if not r["pooled"]}
    for condition, rate in expert_rates.items():
        assert rows[(clinician.username, condition)]["error_rate"] == pytest.approx(rate, abs=1e-9)

    # judge error rates over every judged step
    verdicts = pd.DataFrame(
        JudgeVerdict.objects.filter(run__audit__slug="seed-steps").values(
            "verdict",
            judge=F("run__judge__name"),
            condition=F("step__trace__condition__blind_code"),
        )
    )
    judged = verdicts[verdicts["verdict"] != "abstain"]
    for (judge, condition), group in judged.groupby(["judge", "condition"]):
        expected = float((group["verdict"] == "error").mean())
        assert rows[(judge, condition)]["error_rate"] == pytest.approx(expected, abs=1e-9)

    # PPI's point estimate per judge x condition: ppi_py with the inclusion weights
    from ppi_py import ppi_mean_pointestimate

    steps = pd.DataFrame(
        JudgeVerdict.objects.filter(run__audit__slug="seed-steps").values(
            "step_id", "verdict", judge=F("run__judge__name"),
            condition=F("step__trace__condition__blind_code"),
        )
    )  # fmt: skip
    expert_by_step = labels.set_index("sid")
    ppi_rows = {(r["judge"], r["condition"]): r for r in report["ppi"]["rows"]}
    for (judge, condition), group in steps.groupby(["judge", "condition"]):
        group = group[group["verdict"] != "abstain"]
        labelled = group[group["step_id"].isin(expert_by_step.index)]
        y = expert_by_step.loc[labelled["step_id"], "y"].to_numpy()
        w = expert_by_step.loc[labelled["step_id"], "w"].to_numpy()
        yhat = (labelled["verdict"] == "error").to_numpy(float)
        yhat_all = (group["verdict"] == "error").to_numpy(float)
        expected = ppi_mean_pointestimate(y, yhat, yhat_all, lam=1, w=w * len(w) / w.sum())
        got = ppi_rows[(judge, condition)]
        expected = float(np.atleast_1d(expected)[0])
        assert got["estimate"] == pytest.approx(min(1.0, max(0.0, expected)), abs=1e-9)

    # the verifiable-trace contingency per arm: trace correct (no reference error) x answer
    traces = pd.DataFrame(
        Trace.objects.filter(audit__slug="seed-steps").values(
            "pk", "answer_correct", arm=F("condition__blind_code")
        )
    )
    wrong = set(steps_of_audit.filter(reference_verdict="error").values_list("trace_id", flat=True))
    traces["flawless"] = ~traces["pk"].isin(wrong)
    by_arm = {r["condition"]: r for r in report["trace_vs_answer"]}
    assert set(by_arm) == {*traces["arm"], "all"}
    for condition, group in [*traces.groupby("arm"), ("all", traces)]:
        table = (
            pd.crosstab(group["flawless"], group["answer_correct"])
            .reindex(index=[True, False], columns=[True, False], fill_value=0)
            .to_numpy()
        )
        row = by_arm[condition]
        assert [
            row["trace_correct_answer_correct"], row["trace_correct_answer_wrong"],
            row["trace_wrong_answer_correct"], row["trace_wrong_answer_wrong"],
        ] == table.ravel().tolist()  # fmt: skip
        chi2 = stats.chi2_contingency(table, correction=False)
        assert row["chi2"] == pytest.approx(chi2.statistic, rel=1e-9)
        expected_test = "fisher" if (chi2.expected_freq < 5).any() else "chi-square"
        assert row["test"] == expected_test
        if expected_test == "fisher":
            assert row["p"] == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)
    assert BatchItem.objects.filter(batch__name="experts").count() == 150
