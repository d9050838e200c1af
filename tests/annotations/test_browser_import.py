"""An admin imports traces from the browser: a rejected file, then a good one run by a worker."""

import json
import time
from pathlib import Path

import pytest
from browsing import sign_in
from django.urls import reverse

from annotations.models import ImportJob, Step, Trace
from annotations.services.audits import audit_create

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "traces.jsonl"


def test_an_admin_sees_a_bad_file_refused_by_line_then_a_good_import_finish(
    page, admin_user, celery_worker_process, tmp_path, artifacts_dir
):
    # given an empty audit, a worker on the default queue, and a file broken on its line 3
    audit = audit_create(slug="browser-import", name="Browser import")
    celery_worker_process(queues="celery")
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    broken = dict(json.loads(lines[2]))
    del broken["question"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], lines[1], json.dumps(broken), *lines[3:]]) + "\n")
    sign_in(page, admin_user)
    url = reverse("annotations:import", kwargs={"slug": audit.slug})
    # when they upload the broken file
    page.goto(url)
    page.locator("#id_file").set_input_files(str(bad))
    page.get_by_role("button", name="Validate and import").click()
    page.wait_for_load_state("load")
    # then the page says which line is wrong and nothing was imported
    alert = page.get_by_role("alert")
    assert "nothing was imported" in alert.inner_text()
    assert "line 3" in alert.inner_text() and "question" in alert.inner_text()
    assert not Trace.objects.filter(audit=audit).exists() and not ImportJob.objects.exists()
    # when they upload the good file, split into sentences as well as its given steps
    page.locator("#id_file").set_input_files(str(EXAMPLE))
    page.get_by_label("given").check()
    page.get_by_label("sentences").check()
    page.get_by_role("button", name="Validate and import").click()
    page.wait_for_url("**/imports/*/")
    # then the job page follows the worker to the end, without a reload
    status = page.locator('#import-job [data-field="status"]')
    deadline = time.monotonic() + 60
    while status.inner_text() not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status.inner_text() == "done"
    bar = page.get_by_role("progressbar", name="Import progress")
    assert bar.get_attribute("aria-valuenow") == bar.get_attribute("aria-valuemax") == "60"
    assert page.locator('#import-job [data-field="fill"]').evaluate("e => e.style.width") == "100%"
    n_steps = Step.objects.filter(audit=audit).count()
    assert page.locator('#import-job [data-field="traces"]').inner_text() == "60"
    assert page.locator('#import-job [data-field="steps"]').inner_text() == str(n_steps)
    assert Trace.objects.filter(audit=audit).count() == 60
    assert set(Step.objects.filter(audit=audit).values_list("segmentation", flat=True)) == {
        "given",
        "sentences",
    }
    assert page.errors == []
    page.wait_for_timeout(400)  # the bar's width transition, for the screenshot
    page.screenshot(path=str(artifacts_dir / "import.png"), full_page=True)
