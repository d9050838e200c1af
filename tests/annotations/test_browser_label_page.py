"""The labelling page for an afternoon's work (issue 13), in Debian's chromium, keyboard only:
the fast-typing race, skip and flag, the submit confirmation and reopening, ten seconds
offline, the layout at 1366×768 and 820×1180, and axe-core on every clinician page."""

import json
import re
import time

import pytest
from axe import assert_no_serious_axe_violations
from browsing import sign_in, submit_by_keyboard

from annotations.models import Assignment, AssignmentEvent, AssignmentItem, Label, LabelRevision

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _login(page, user) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_username").press_sequentially(user.username)
    page.keyboard.press("Tab")
    page.keyboard.type(user.raw_password)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/my/$"))


def _at(page, pid: str, position: int) -> None:
    page.wait_for_url(f"**/my/{pid}/{position}/")


def _settled(page) -> None:
    """Nothing waiting in the page's outbox."""
    page.locator("#sync[hidden]").wait_for(state="attached")


def _stored(assignment) -> dict[int, Label]:
    labels = Label.objects.select_related("assignment_item").filter(assignment=assignment)
    return {label.assignment_item.position: label for label in labels}


def _assign(audit, clinician, *, size: int, name: str = "b13"):
    from annotations.services.batches import batch_assign, batch_build

    batch = batch_build(audit=audit, name=name, size=size, segmentation="given")
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    return assignment


def _watch_saves(page) -> dict:
    """How many writes of each item were on their way at once, at most."""
    seen = {"open": {}, "max": {}}

    def key(request):
        if request.method in ("PUT", "POST") and "/items/" in request.url:
            return request.url.split("/items/")[1].split("/")[0]
        return None

    def started(request):
        if (k := key(request)) is not None:
            seen["open"][k] = seen["open"].get(k, 0) + 1
            seen["max"][k] = max(seen["max"].get(k, 0), seen["open"][k])

    def ended(request):
        if (k := key(request)) is not None:
            seen["open"][k] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    return seen


def test_fast_typing_shows_only_the_servers_state(page, demo_audit, clinician):
    # given a clinician on the first of six items
    assignment = _assign(demo_audit, clinician, size=6)
    pid = assignment.public_id
    categories = list(demo_audit.error_categories)
    _login(page, clinician)
    page.goto(f"/my/{pid}/1/")
    saves = _watch_saves(page)
    for position in range(1, 6):
        # when they type "2 ↓ ↓ Enter" as fast as the keyboard goes
        for key in ("2", "ArrowDown", "ArrowDown", "Enter"):
            page.keyboard.press(key)
        # then the next item shows the server's count and no "Saved ✓" for nothing
        _at(page, pid, position + 1)
        _settled(page)
        stored = Label.objects.filter(assignment=assignment).count()
        assert stored == position
        assert page.locator("#done-text").text_content() == f"{stored} done"
        assert page.locator("#status").text_content() != "Saved ✓"
        assert page.locator('[data-verdict="error"]').get_attribute("aria-checked") == "false"
    # and every label is what was pressed: an error of the third kind, one revision or two
    labels = _stored(assignment)
    assert sorted(labels) == [1, 2, 3, 4, 5]
    assert {(lab.verdict, lab.error_category) for lab in labels.values()} == {
        ("error", categories[2])
    }
    # and no two writes of one item were ever on their way together
    assert max(saves["max"].values()) == 1, saves["max"]
    assert page.errors == []


def test_skip_flag_submit_confirmation_locked_page_and_reopen(
    page, browser, live_server, demo_audit, clinician, admin_user
):
    # given a clinician on the first of five items
    assignment = _assign(demo_audit, clinician, size=5)
    pid = assignment.public_id
    total = assignment.items.count()
    _login(page, clinician)
    page.goto(f"/my/{pid}/1/")
    # when they skip the first item
    page.keyboard.press("s")
    _at(page, pid, 2)
    # and flag the second one with a note, saved by Enter from the note
    page.keyboard.press("1")
    page.keyboard.press("f")
    page.keyboard.type("odd wording")
    page.keyboard.press("Enter")
    _at(page, pid, 3)
    # and label the rest
    for position in range(3, total + 1):
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        if position < total:
            _at(page, pid, position + 1)
    # then the skipped item comes back at the end, unlabelled, and says so
    _at(page, pid, 1)
    page.get_by_text("You skipped this item earlier").wait_for()
    assert page.locator('[data-verdict="correct"]').get_attribute("aria-checked") == "false"
    # when they skip it again, nothing is left; the submit box appears
    page.keyboard.press("s")
    page.locator("#submit-box:not([hidden])").wait_for()
    assert page.locator("#done-text").text_content() == f"{total - 1} done, 1 skipped"
    # the overview shows the skipped and the flagged item, with a legend
    page.keyboard.press("o")
    page.locator("#overview-dialog[open]").wait_for()
    assert page.locator('#overview-list a[aria-label="Item 1: skipped"]').count() == 1
    assert page.locator('#overview-list a[aria-label="Item 2: correct, flagged"]').count() == 1
    assert page.locator("#overview-dialog .legend li").count() >= 6
    page.keyboard.press("Escape")
    # then the submission asks, with the counts, and Enter alone never submits
    submit_by_keyboard(page, labelled=total - 1, skipped=1, flagged=1)
    # and the database holds the skip and the flag
    assignment.refresh_from_db()
    assert assignment.submitted_at is not None
    item1 = AssignmentItem.objects.get(assignment=assignment, position=1)
    assert item1.skipped_at is not None and not Label.objects.filter(assignment_item=item1)
    flagged = Label.objects.get(assignment=assignment, assignment_item__position=2)
    assert (flagged.flagged, flagged.flag_note, flagged.verdict) == (True, "odd wording", "correct")
    assert LabelRevision.objects.filter(label=flagged).last().flagged is True

    # when they open a submitted item: its controls are disabled and look it
    page.goto(f"/my/{pid}/2/")
    for selector in ("#save-next-button", "#skip-button", "#flag", "#comment", ".verdict"):
        assert page.locator(selector).first.is_disabled(), selector
    look = page.evaluate(
        """() => [getComputedStyle(document.getElementById("save-next-button")).backgroundColor,
                  getComputedStyle(document.querySelector(".verdict")).borderStyle]"""
    )
    assert look == ["rgb(236, 238, 241)", "dashed"]
    page.keyboard.press("1")
    assert Label.objects.get(pk=flagged.pk).verdict == "correct"

    # when an admin reopens it from the batch page
    admin_context = browser.new_context(base_url=live_server.url)
    admin_page = admin_context.new_page()
    sign_in(admin_page, admin_user)
    admin_page.goto(f"/batches/{assignment.batch_id}/")
    admin_page.get_by_role("button", name=f"Reopen the assignment of {clinician.username}").click()
    admin_page.get_by_text(f"Assignment {pid} reopened").wait_for()
    admin_context.close()
    # then it is logged, and the clinician can change labels again
    event = AssignmentEvent.objects.get(assignment=assignment)
    assert (event.kind, event.by, event.submitted_at) == (
        "reopened",
        admin_user,
        assignment.submitted_at,
    )
    assert Assignment.objects.get(pk=assignment.pk).submitted_at is None
    page.reload()
    assert not page.locator("#save-next-button").is_disabled()
    page.keyboard.press("3")
    page.get_by_text("Saved ✓").wait_for()
    assert Label.objects.get(pk=flagged.pk).verdict == "abstain"
    assert page.errors == []


def test_ten_seconds_offline_lose_nothing_and_double_nothing(page, demo_audit, clinician):
    # given a clinician two items into an assignment of eight
    assignment = _assign(demo_audit, clinician, size=8)
    pid = assignment.public_id
    _login(page, clinician)
    page.goto(f"/my/{pid}/1/")
    pressed = {1: "correct", 2: "abstain"}
    for position, key in ((1, "1"), (2, "3")):
        page.keyboard.press(key)
        page.keyboard.press("Enter")
        _at(page, pid, position + 1)
    # when the network goes away for 10 s while they go on labelling three more items
    page.context.set_offline(True)
    offline_at = time.monotonic()
    for key, verdict in (("1", "correct"), ("a", "abstain"), ("c", "correct")):
        page.keyboard.press(key)
        page.keyboard.press("Enter")
        pressed[len(pressed) + 1] = verdict
    # then the page says plainly that nothing is saved yet, and warns before leaving
    page.get_by_text("Not saved yet").wait_for()
    assert "kept on this page" in page.locator("#sync").text_content()
    warns = page.evaluate(
        """() => { const e = new Event("beforeunload", { cancelable: true });
                   window.dispatchEvent(e); return e.defaultPrevented; }"""
    )
    assert warns is True
    assert Label.objects.filter(assignment=assignment).count() == 2
    time.sleep(max(0.0, 10 - (time.monotonic() - offline_at)))
    page.context.set_offline(False)
    # then every key lands, on the item it was meant for, once
    _at(page, pid, 6)
    _settled(page)
    labels = _stored(assignment)
    assert {p: lab.verdict for p, lab in labels.items()} == pressed
    assert all(lab.revision == 1 for lab in labels.values())
    assert LabelRevision.objects.filter(label__assignment=assignment).count() == len(pressed)
    assert page.locator("#done-text").text_content() == f"{len(pressed)} done"
    assert page.errors == []


# --- layout -----------------------------------------------------------------------------------
LONG = (
    "Considering the patient's history of progressive exertional dyspnoea, orthopnoea and "
    "bilateral ankle oedema together with the raised jugular venous pressure, the most "
    "economical explanation is a chronic reduction in left ventricular systolic function, "
    "which the echocardiogram would be expected to confirm."
)


@pytest.fixture
def long_audit(db, tmp_path):
    """Traces of six long steps under a long question: the page's worst case for room."""
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_file

    audit = audit_create(slug="long", name="Long steps", context_window=4)
    rows = []
    for n in range(8):
        steps = [f"{i}. {LONG} (point {i} of trace {n})" for i in range(1, 7)]
        rows.append(
            {
                "question_id": f"q{n}",
                "question": "A 68-year-old man presents with breathlessness. " + LONG,
                "options": {k: f"Option {k}: {LONG[:90]}" for k in "ABCD"},
                "gold_answer": "B",
                "dataset": "long",
                "condition": ("teacher", "student")[n % 2],
                "trace_id": f"t{n}",
                "sample_index": 0,
                "trace": "\n".join(steps),
                "final_answer": "B",
                "steps": [{"text": text} for text in steps],
            }
        )
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    import_file(audit=audit, path=path, segmenter_names=["given"])
    return audit


def _in_view(page, selector: str) -> dict:
    return page.evaluate(
        """(selector) => {
            const r = document.querySelector(selector).getBoundingClientRect();
            return { top: r.top, bottom: r.bottom, height: innerHeight,
                     fits: r.top >= 0 && r.bottom <= innerHeight && r.height > 0 };
        }""",
        selector,
    )


@pytest.mark.parametrize("size", [(1366, 768), (820, 1180)], ids=["1366x768", "820x1180"])
def test_step_verdicts_and_save_fit_the_screen(page, long_audit, clinician, size, artifacts_dir):
    from annotations.selectors.blinded import item_get_blinded

    # given an item with four (long) preceding steps
    assignment = _assign(long_audit, clinician, size=48)
    pid = assignment.public_id
    position = next(
        p
        for p in range(1, assignment.items.count() + 1)
        if len(item_get_blinded(clinician=clinician, assignment_public_id=pid, position=p).context)
        == 4
    )
    page.set_viewport_size({"width": size[0], "height": size[1]})
    _login(page, clinician)
    page.goto(f"/my/{pid}/{position}/")
    assert page.locator("#context-steps li").count() == 4
    # then the step, the verdicts and Save are in view, the page itself does not scroll
    for selector in ("#step-text", ".verdict-buttons", "#save-next-button"):
        assert _in_view(page, selector)["fits"], (selector, _in_view(page, selector))
    assert page.evaluate("() => document.scrollingElement.scrollHeight <= innerHeight + 1")
    # and the preceding steps scroll on their own
    assert page.evaluate(
        "() => { const c = document.querySelector('details.context');"
        " return c.scrollHeight > c.clientHeight; }"
    )
    # when they choose "Error": the kinds of error appear and Save stays in view
    page.keyboard.press("2")
    assert page.locator("#category-box").is_visible()
    for selector in ("#step-text", ".verdict-buttons", "#save-next-button"):
        assert _in_view(page, selector)["fits"], (selector, _in_view(page, selector))
    page.screenshot(path=str(artifacts_dir / f"label-page-{size[0]}x{size[1]}.png"))
    assert_no_serious_axe_violations(page)
    # and a digit picks the kind of error by its number
    page.keyboard.press("3")
    page.get_by_text("Saved ✓").wait_for()
    label = Label.objects.get(assignment=assignment, assignment_item__position=position)
    assert label.error_category == long_audit.error_categories[2]
    # and the mouse can pick one too
    page.locator("#category-box label.choice").nth(1).click()
    page.locator("#category-box input:checked").wait_for()
    page.wait_for_function(
        "(want) => document.getElementById('status').textContent === 'Saved ✓'"
        " && document.querySelector('#category-box input:checked').value === want",
        arg=long_audit.error_categories[1],
    )
    label.refresh_from_db()
    assert label.error_category == long_audit.error_categories[1]
    assert page.errors == []


def test_overview_arrows_and_key_help(page, demo_audit, clinician):
    assignment = _assign(demo_audit, clinician, size=12)
    pid = assignment.public_id
    _login(page, clinician)
    page.goto(f"/my/{pid}/3/")
    # when they open the overview and move by the arrow keys
    page.keyboard.press("o")
    page.locator("#overview-dialog[open]").wait_for()
    focused = "() => document.activeElement.getAttribute('aria-label')"
    assert page.evaluate(focused).startswith("Item 3:")
    page.keyboard.press("ArrowRight")
    assert page.evaluate(focused).startswith("Item 4:")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate(focused).startswith("Item 2:")
    per_row = page.evaluate(
        "() => { const cells = [...document.querySelectorAll('#overview-list a')];"
        " return cells.filter((c) => c.offsetTop === cells[0].offsetTop).length; }"
    )
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused).startswith(f"Item {min(2 + per_row, 12)}:")
    page.keyboard.press("Enter")
    _at(page, pid, min(2 + per_row, 12))
    # and the key help names every key
    page.keyboard.press("?")
    page.locator("#help-dialog[open]").wait_for()
    keys = set(page.locator("#help-dialog dt kbd").all_text_contents())
    for key in ("1", "2", "3", "c", "e", "a", "s", "f", "x", "m", "o", "g", "?", "Enter", "Esc"):
        assert key in keys, key
    assert page.errors == []


def test_clinician_pages_have_no_serious_axe_violations(page, demo_audit, clinician):
    assignment = _assign(demo_audit, clinician, size=3)
    pid = assignment.public_id
    found = {}
    # sign-in
    page.goto("/accounts/login/")
    found["sign-in"] = assert_no_serious_axe_violations(page)
    _login(page, clinician)
    found["assignment list"] = assert_no_serious_axe_violations(page)
    page.goto(f"/my/{pid}/1/")
    page.keyboard.press("2")  # the kinds of error shown too
    found["labelling"] = assert_no_serious_axe_violations(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    _at(page, pid, 2)
    page.keyboard.press("o")
    page.locator("#overview-dialog[open]").wait_for()
    found["overview"] = assert_no_serious_axe_violations(page)
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    page.locator("#help-dialog[open]").wait_for()
    found["key help"] = assert_no_serious_axe_violations(page)
    page.keyboard.press("Escape")
    # The rest are labelled behind the page, then the last item shows the submit box. (Run
    # after the overview test, the Enter after the help dialog's Escape did not move on here,
    # run alone it does; not yet understood. The keyboard loop has its own tests above.)
    from annotations.services.labels import label_save

    for position in (2, 3):
        label_save(
            annotator=clinician, assignment_public_id=pid, position=position, verdict="correct"
        )
    page.goto(f"/my/{pid}/3/")
    page.locator("#submit-box:not([hidden])").wait_for()
    page.locator("#submit-button").click()
    page.locator("#submit-dialog[open]").wait_for()
    found["submit confirmation"] = assert_no_serious_axe_violations(page)
    page.locator("#submit-confirm").click()
    page.wait_for_url(re.compile(r"/my/$"))
    found["assignment list, submitted"] = assert_no_serious_axe_violations(page)
    page.goto(f"/my/{pid}/1/")
    found["labelling, submitted"] = assert_no_serious_axe_violations(page)
    # printed for the notes: what axe still finds below "serious"
    print({name: [v["id"] for v in found_] for name, found_ in found.items()})
    assert page.errors == []
