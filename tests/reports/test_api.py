import base64
import io
from unittest import mock

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from auditapp.agreement.formats import labels_validate


def _urls(slug: str) -> list[tuple[str, str]]:
    return [
        ("get", reverse("reports:index")),
        ("get", reverse("reports:audit", args=[slug])),
        ("get", reverse("reports:audit-html", args=[slug])),
        ("get", reverse("reports:audit-unblind", args=[slug])),
        ("post", reverse("reports:audit-plan", args=[slug])),
        ("get", reverse("reports-api:report", args=[slug])),
        ("get", reverse("reports-api:table-base", args=[slug])),
        ("get", reverse("reports-api:table", args=[slug, "labels", "csv"])),
        ("get", reverse("reports-api:table", args=[slug, "error_rates", "csv"])),
        ("get", reverse("reports-api:plan", args=[slug])),
        ("post", reverse("reports-api:plan", args=[slug])),
        ("post", reverse("reports-api:unblind", args=[slug])),
        ("post", reverse("reports-api:agreement-stats")),
    ]


def test_clinician_is_refused_everywhere(client, demo_audit, clinician, condition_names):
    # given a signed-in clinician
    client.force_login(clinician)
    for method, url in _urls(demo_audit.slug) + _urls("no-such-audit"):
        # when / then 403 (or 404), and nothing of the audit in the body
        response = getattr(client, method)(url)
        assert response.status_code in (403, 404), (url, response.status_code)
        body = response.content.decode()
        assert not any(
            code in body for code in demo_audit.conditions.values_list("blind_code", flat=True)
        ), url
        assert not any(name in body for name in condition_names), url
    demo_audit.refresh_from_db()
    assert demo_audit.unblinded_at is None


def test_anonymous_is_refused_everywhere(client, demo_audit):
    for method, url in _urls(demo_audit.slug):
        response = getattr(client, method)(url)
        assert response.status_code in (302, 401, 403), (url, response.status_code)


def test_report_api_query_params_and_cache(api_client, demo_audit, researcher):
    # given
    api_client.force_authenticate(researcher)
    url = reverse("reports-api:report", args=[demo_audit.slug])
    from reports import services

    # when asked twice with the same settings
    with mock.patch.object(services, "report_compute", wraps=services.report_compute) as spy:
        first = api_client.get(url, {"seed": 5, "resamples": 40, "ece_bins": 4})
        second = api_client.get(url, {"seed": 5, "resamples": 40, "ece_bins": 4})
        other = api_client.get(url, {"seed": 6, "resamples": 40, "ece_bins": 4})
    # then computed once per distinct settings
    assert first.status_code == second.status_code == other.status_code == 200
    assert spy.call_count == 2
    assert first.json() == second.json()
    assert first.json()["parameters"]["resamples"] == 40
    assert "4 equal-width" in first.json()["methods"]["ece"]


@pytest.mark.parametrize(
    "params",
    [{"resamples": 0}, {"seed": -1}, {"ece_bins": "x"}, {"abstain_rule": "maybe"}],
    ids=["resamples", "seed", "bins", "abstain"],
)
def test_report_api_bad_params_400(api_client, demo_audit, researcher, params):
    api_client.force_authenticate(researcher)
    response = api_client.get(reverse("reports-api:report", args=[demo_audit.slug]), params)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_csv_download_reads_back_with_pandas(api_client, demo_audit, researcher):
    # given a researcher with basic auth, as pandas.read_csv(url, storage_options=...) sends
    token = base64.b64encode(b"researcher1:" + researcher.raw_password.encode()).decode()
    url = reverse("reports-api:table", args=[demo_audit.slug, "labels", "csv"])
    # when
    response = api_client.get(url, HTTP_AUTHORIZATION=f"Basic {token}", HTTP_ACCEPT="text/csv")
    # then a CSV pandas reads into the documented long format
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    frame = pd.read_csv(io.BytesIO(response.content), dtype=str)
    assert len(labels_validate(frame)) == 264


def test_parquet_and_report_table_downloads(api_client, demo_audit, researcher):
    # given
    api_client.force_authenticate(researcher)
    # when
    parquet = api_client.get(
        reverse("reports-api:table", args=[demo_audit.slug, "answers", "parquet"])
    )
    rates = api_client.get(
        reverse("reports-api:table", args=[demo_audit.slug, "error_rates", "csv"]),
        {"resamples": 30},
    )
    missing = api_client.get(reverse("reports-api:table", args=[demo_audit.slug, "x", "csv"]))
    bad_fmt = api_client.get(reverse("reports-api:table", args=[demo_audit.slug, "labels", "xls"]))
    # then
    assert parquet.status_code == 200
    assert len(pd.read_parquet(io.BytesIO(parquet.content))) == 60
    assert set(pd.read_csv(io.BytesIO(rates.content))["evaluator"]) == {"reference"}
    assert missing.status_code == 404 and bad_fmt.status_code == 404


def test_agreement_stats_api(api_client, researcher):
    # given an uploaded CSV
    api_client.force_authenticate(researcher)
    csv = b"u,r,v\n1,a,x\n1,b,x\n2,a,y\n2,b,x\n3,a,y\n3,b,y\n"
    url = reverse("reports-api:agreement-stats")
    # when
    ok = api_client.post(
        url,
        {"file": SimpleUploadedFile("t.csv", csv), "unit": "u", "rater": "r", "value": "v"},
        format="multipart",
    )
    missing_col = api_client.post(
        url,
        {"file": SimpleUploadedFile("t.csv", csv), "unit": "u", "rater": "who", "value": "v"},
        format="multipart",
    )
    no_file = api_client.post(url, {"unit": "u", "rater": "r", "value": "v"}, format="multipart")
    # then
    assert ok.status_code == 200
    assert ok.json()["percent_agreement"] == pytest.approx(2 / 3)
    assert ok.json()["cohen_kappa"] == pytest.approx(0.4)
    assert missing_col.status_code == 400 and missing_col.json()["code"] == "missing_column"
    assert no_file.status_code == 400


def test_researcher_page_links_every_download(client, demo_audit, researcher):
    # given / when
    client.force_login(researcher)
    body = client.get(reverse("reports:audit", args=[demo_audit.slug]), {"resamples": 20})
    text = body.content.decode()
    # then each table and long table is downloadable from the page
    base = reverse("reports-api:table-base", args=[demo_audit.slug])
    for name in ("labels.csv", "labels.parquet", "error_rates.csv", "answer_metrics.csv"):
        assert f"{base}{name}" in text
    assert reverse("reports:audit-html", args=[demo_audit.slug]) in text
