"""A judge run started from the runs page in a real browser, executed by a real Celery worker."""

import time

import pytest
from browsing import sign_in
from django.urls import reverse

from annotations.models import Condition, Step
from judges.models import JudgeRun, JudgeVerdict
from judges.services import judge_create_or_update

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]


def test_a_run_started_in_the_browser_moves_its_bar_to_the_end(
    page, researcher, demo_audit, fake_process, celery_worker_process, artifacts_dir
):
    # given a slow endpoint (about 20 steps/s), a judge on it and a worker on the judges queue
    base_url = fake_process("--latency-ms", "100", "--jitter-ms", "0")
    judge_create_or_update(
        spec={"name": "ui-judge", "base_url": base_url, "model": "fake-judge", "max_concurrency": 2}
    )
    celery_worker_process(queues="judges")
    total = Step.objects.filter(audit=demo_audit, segmentation="given").count()
    sign_in(page, researcher)
    page.goto(reverse("judges:runs", kwargs={"slug": demo_audit.slug}))
    # when they start a run from the form
    page.locator("#id_judge").select_option("ui-judge")
    page.locator("#id_segmentation").select_option("given")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_load_state("load")
    loads = []
    page.on("load", lambda _: loads.append(1))
    card = page.locator(".run").first
    bar = card.get_by_role("progressbar")
    # then the bar moves as verdicts arrive, on the page as it is (polling, no reload)
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen.append(int(bar.get_attribute("aria-valuenow")))
        if card.locator('[data-field="status"]').inner_text() == "done":
            break
        time.sleep(0.25)
    assert card.locator('[data-field="status"]').inner_text() == "done"
    values = sorted(set(seen))
    assert seen == sorted(seen), "the bar never goes back"
    assert len([v for v in values if 0 < v < total]) >= 2, seen  # it moved in steps
    assert int(bar.get_attribute("aria-valuemax")) == total
    assert int(bar.get_attribute("aria-valuenow")) == total
    assert card.locator('[data-field="fill"]').evaluate("e => e.style.width") == "100%"
    assert card.locator('[data-field="remaining"]').inner_text() == "0"
    assert loads == [] and page.errors == [] and page.csp_violations == []
    # and the page followed the run: no action is offered on an ended run, and the table of
    # verdicts per condition counts every verdict without a reload
    for action in ("Pause", "Resume", "Cancel"):
        assert not card.get_by_role("button", name=action).is_visible(), action
    judged = card.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert len(judged) == 3 and sum(int(x) for x in judged) == total
    # and the run is whole, shown by blind code only
    run = JudgeRun.objects.get()
    assert run.status == JudgeRun.Status.DONE and run.done == total
    assert JudgeVerdict.objects.filter(run=run).count() == total
    content = page.content()
    for name in Condition.objects.filter(audit=demo_audit).values_list("name", flat=True):
        assert name not in content, name
    page.screenshot(path=str(artifacts_dir / "judge-run.png"), full_page=True)
