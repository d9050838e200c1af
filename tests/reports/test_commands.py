import json

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from auditapp.agreement.coefficients import (
    cohen_kappa,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha,
    percent_agreement,
)

LABELS = """step_id,trace_id,question_id,condition,evaluator,evaluator_kind,verdict
s1,t1,q1,A,judge-1,judge,error
s2,t1,q1,A,judge-1,judge,correct
s3,t2,q2,A,judge-1,judge,correct
s4,t3,q1,B,judge-1,judge,error
s5,t3,q1,B,judge-1,judge,error
s6,t4,q2,B,judge-1,judge,correct
s1,t1,q1,A,dr-a,expert,error
s2,t1,q1,A,dr-a,expert,correct
s4,t3,q1,B,dr-a,expert,error
s5,t3,q1,B,dr-a,expert,abstain
s6,t4,q2,B,dr-a,expert,error
"""
ANSWERS = """trace_id,question_id,condition,sample_index,answer,gold,confidence
t1,q1,A,0,B,B,0.9
t2,q2,A,0,C,D,0.6
t3,q1,B,0,B,B,0.8
t4,q2,B,0,D,D,0.7
"""
RATINGS = """trace_id,trace_type,rater,item,value
t1,short,r1,clarity,4
t2,short,r1,clarity,5
t3,long,r1,clarity,2
t4,long,r1,clarity,3
t1,short,r2,clarity,4
t3,long,r2,clarity,1
"""
STATS = """item,coder,score
1,a,1
1,b,1
1,c,2
2,a,2
2,b,2
2,c,2
3,a,3
3,b,3
3,c,1
4,a,1
4,b,2
5,a,3
5,b,3
5,c,3
"""


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, text in {
        "labels": LABELS,
        "answers": ANSWERS,
        "ratings": RATINGS,
        "stats": STATS,
    }.items():
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(text)
    return paths


def test_report_from_files_json(files, tmp_path, capsys):
    # given the three long files / when
    call_command(
        "agreement_report",
        labels=files["labels"],
        answers=files["answers"],
        ratings=files["ratings"],
        resamples=50,
        seed=3,
        ece_bins=5,
    )
    report = json.loads(capsys.readouterr().out)
    # then every section, the settings stated, the numbers right
    for key in (
        "error_rates",
        "orderings",
        "ordering_agreement",
        "pairwise_agreement",
        "multi_rater",
        "answer_metrics",
        "trace_vs_answer",
        "likert",
        "ppi",
        "methods",
    ):
        assert key in report
    assert report["parameters"] == {
        "seed": 3,
        "resamples": 50,
        "ece_bins": 5,
        "abstain_rule": "exclude",
        "confidence_level": 0.95,
    }
    judge_a = next(
        r for r in report["error_rates"] if r["evaluator"] == "judge-1" and r["condition"] == "A"
    )
    assert judge_a["error_rate"] == pytest.approx(1 / 3)
    expert_b = next(
        r for r in report["error_rates"] if r["evaluator"] == "dr-a" and r["condition"] == "B"
    )
    assert (expert_b["n"], expert_b["n_abstain"], expert_b["n_error"]) == (3, 1, 2)
    assert [r["accuracy"] for r in report["answer_metrics"]] == [0.5, 1.0]
    assert "5 equal-width" in report["methods"]["ece"]
    assert {r["item"] for r in report["likert"]["rows"]} == {"clarity"}


def test_report_is_reproducible_from_its_seed(files, capsys):
    # given / when run twice with one seed
    outs = []
    for _ in range(2):
        call_command("agreement_report", labels=files["labels"], resamples=30, seed=11)
        report = json.loads(capsys.readouterr().out)
        outs.append([r["ci_low"] for r in report["error_rates"]])
    # then the same intervals
    assert outs[0] == outs[1]


def test_report_csv_and_html_from_files(files, tmp_path):
    # given / when
    call_command(
        "agreement_report",
        labels=files["labels"],
        format="csv",
        out=str(tmp_path / "rates.csv"),
        resamples=20,
    )
    call_command(
        "agreement_report",
        labels=files["labels"],
        format="html",
        out=str(tmp_path / "r.html"),
        resamples=20,
    )
    call_command(
        "agreement_report",
        labels=files["labels"],
        format="csv",
        out=str(tmp_path / "all") + "/",
        resamples=20,
    )
    # then
    rates = pd.read_csv(tmp_path / "rates.csv")
    assert {"evaluator", "condition", "error_rate", "ci_low", "wilson_low"} <= set(rates.columns)
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html
    assert (tmp_path / "all" / "ordering_agreement.csv").exists()
    assert (tmp_path / "all" / "report.json").exists()


def test_report_from_audit_json(demo_audit, capsys):
    # given the demo audit / when
    call_command("agreement_report", audit=demo_audit.slug, resamples=30)
    report = json.loads(capsys.readouterr().out)
    # then reference error rates for the three blind codes
    assert report["audit"]["slug"] == "demo-test"
    assert len([r for r in report["error_rates"] if r["evaluator"] == "reference"]) == 3
    assert report["blinding"]["blinded"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": "/nonexistent/labels.csv"}, "cannot read"),
        ({"audit": "no-such-audit"}, "no audit"),
        ({"labels": "STATS"}, "missing column"),
        ({"labels": "LABELS", "resamples": "0"}, "positive integer"),
    ],
    ids=["missing-file", "missing-audit", "wrong-columns", "zero-resamples"],
)
def test_report_bad_input_is_a_command_error(db, files, kwargs, message):
    # given bad input / when / then a CommandError, never a traceback
    args = []
    for key, value in kwargs.items():
        value = {"STATS": str(files["stats"]), "LABELS": str(files["labels"])}.get(value, value)
        args += [f"--{key}", value]
    with pytest.raises(CommandError, match=message):
        call_command("agreement_report", *args)


def test_agreement_stats_matches_the_statistics_functions(files, capsys):
    # given three coders, one missing rating / when
    call_command(
        "agreement_stats",
        input=str(files["stats"]),
        unit="item",
        rater="coder",
        value="score",
        level="ordinal",
    )
    result = json.loads(capsys.readouterr().out)
    # then each coefficient is what the statistics package computes
    frame = pd.read_csv(files["stats"]).astype({"item": str, "coder": str})
    kw = {"unit": "item", "rater": "coder", "value": "score"}
    assert result["percent_agreement"] == pytest.approx(percent_agreement(frame, **kw))
    assert result["fleiss_kappa"] == pytest.approx(fleiss_kappa(frame, **kw))
    assert result["gwet_ac1"] == pytest.approx(gwet_ac1(frame, **kw))
    assert result["krippendorff_alpha"] == pytest.approx(
        krippendorff_alpha(frame, level="ordinal", **kw)
    )
    assert result["cohen_kappa"] is None  # three raters
    assert result["n_raters"] == 3 and result["n_units"] == 5


def test_agreement_stats_two_raters_gives_cohen_kappa(tmp_path, capsys):
    # given two raters (Cohen 1960 style 2x2) / when
    path = tmp_path / "two.csv"
    rows = (
        ["u,r,v"]
        + [f"{i},x,{a}" for i, a in enumerate("yyyynnyn")]
        + [f"{i},z,{b}" for i, b in enumerate("yynynnyy")]
    )
    path.write_text("\n".join(rows) + "\n")
    call_command("agreement_stats", input=str(path), unit="u", rater="r", value="v")
    result = json.loads(capsys.readouterr().out)
    # then kappa is the package's cohen_kappa
    frame = pd.read_csv(path).astype(str)
    assert result["cohen_kappa"] == pytest.approx(
        cohen_kappa(frame, unit="u", rater="r", value="v").kappa
    )


@pytest.mark.parametrize(
    ("content", "column", "message"),
    [
        ("u,r,v\n1,a,x\n", "nope", "no column"),
        ("", "v", "empty"),
        ("u,r,v\n1,a,x\n1,b,y\n", "v", None),
    ],
    ids=["missing-column", "empty-file", "fine"],
)
def test_agreement_stats_bad_input(tmp_path, capsys, content, column, message):
    path = tmp_path / "in.csv"
    path.write_text(content)
    if message is None:
        call_command("agreement_stats", input=str(path), unit="u", rater="r", value=column)
        assert json.loads(capsys.readouterr().out)["n_raters"] == 2
        return
    with pytest.raises(CommandError, match=message):
        call_command("agreement_stats", input=str(path), unit="u", rater="r", value=column)


def test_agreement_stats_unreadable_file(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command(
            "agreement_stats", input=str(tmp_path / "none.csv"), unit="u", rater="r", value="v"
        )
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage\x00\x00")
    with pytest.raises(CommandError):
        call_command("agreement_stats", input=str(binary), unit="u", rater="r", value="v")


def test_csv_folder_round_trips_through_the_file_inputs(demo_audit, tmp_path):
    # given the demo audit's report written as CSV files
    folder = tmp_path / "tables"
    call_command(
        "agreement_report",
        "--audit",
        demo_audit.slug,
        "--format",
        "csv",
        "--resamples",
        "50",
        "--seed",
        "3",
        "--out",
        f"{folder}/",
    )
    assert {"labels.csv", "answers.csv", "ratings.csv", "error_rates.csv"} <= {
        p.name for p in folder.iterdir()
    }
    # when the report is recomputed from the long tables alone
    out = tmp_path / "again.json"
    call_command(
        "agreement_report",
        "--labels",
        str(folder / "labels.csv"),
        "--answers",
        str(folder / "answers.csv"),
        "--format",
        "json",
        "--resamples",
        "50",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    # then the error rates and answer metrics are the same numbers
    again = json.loads(out.read_text())
    first = json.loads((folder / "report.json").read_text())

    def rates(report):
        return sorted(
            (r["evaluator"], r["condition"], r["n"], r["n_error"], round(r["error_rate"], 12))
            for r in report["error_rates"]
        )

    assert rates(again) == rates(first)
    assert again["answer_metrics"] == first["answer_metrics"]
