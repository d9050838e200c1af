"""Report API answers schemathesis found broken (tests/auditapp/test_schemathesis.py)."""

import pytest


def test_report_of_an_audit_with_no_labels_yet_is_not_a_server_error(api_client, researcher):
    # given: a new audit, nothing imported or labelled
    from annotations.services.audits import audit_create

    audit_create(slug="empty", name="Nothing yet")
    api_client.force_authenticate(researcher)
    # when
    report = api_client.get("/api/reports/audits/empty/report/")
    table = api_client.get("/api/reports/audits/empty/tables/error_rates.csv")
    # then: a report with nothing in it, not a 500 (it used to pick a segmentation from none)
    assert report.status_code == 200
    assert report.json()["audit"]["slug"] == "empty"
    assert table.status_code == 200


@pytest.mark.parametrize(
    ("query", "accept"),
    [("?format=download", "*/*"), ("", "text/csv"), ("?seed=-1", "application/octet-stream")],
    ids=["format-download", "accept-csv", "accept-binary"],
)
def test_table_errors_are_json_whatever_the_client_asked_for(
    api_client, demo_audit, researcher, query, accept
):
    # given: a request the table download refuses (a bad seed, an unknown table)
    api_client.force_authenticate(researcher)
    bad_seed = f"/api/reports/audits/{demo_audit.slug}/tables/error_rates.csv?seed=-1"
    missing = f"/api/reports/audits/{demo_audit.slug}/tables/nope.csv{query}"
    # when
    answers = [
        api_client.get(bad_seed + query.replace("?", "&"), HTTP_ACCEPT=accept),
        api_client.get(missing, HTTP_ACCEPT=accept),
    ]
    # then: the JSON error body labelled as JSON (it used to be the keys run together)
    assert [a.status_code for a in answers] == [400, 404]
    for answer in answers:
        assert answer["Content-Type"] == "application/json"
        assert set(answer.json()) == {"code", "message", "extra"}
