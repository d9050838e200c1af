"""The database goes away for 15 s while a clinician labels (issue 13): a private PostgreSQL
(initdb into a temporary folder, on a port of its own), the production web command on it, and
Debian's chromium. Afterwards the database holds exactly what was pressed: nothing lost,
nothing doubled. The page retries whatever the server answers meanwhile (a 500, a 503 or no
answer), so this does not depend on how the server reports the outage."""

import json
import re
import sys
import time
from pathlib import Path

import pytest
from private_postgres import PrivatePostgres, free_port_in
from processes import ManagedProcess, wait_for_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent.parent
PG_PORTS = range(21510, 21550)
WEB_PORTS = range(21550, 21600)

SEED = """
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from annotations.roles import Role
from annotations.services.audits import audit_create
from annotations.services.batches import batch_assign, batch_build
from annotations.services.imports import import_file
from annotations.services.users import user_create_or_update
user = user_create_or_update(username="outage1", role=Role.CLINICIAN, password="pw-outage1")
audit = audit_create(slug="outage", name="Outage")
from pathlib import Path
import_file(audit=audit, path=Path("docs/examples/traces.jsonl"), segmenter_names=["given"])
batch = batch_build(audit=audit, name="outage", size=8, segmentation="given")
(assignment,) = batch_assign(batch=batch, annotators=[user])
print(json.dumps({"public_id": assignment.public_id}))
"""


def _env(database_url: str) -> dict:
    import os

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="auditapp.settings.test",
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        DEBUG="1",
        DB_CONN_MAX_AGE="0",
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _labels(database_url: str) -> tuple[dict[int, tuple[str, int]], int]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT ai.position, l.verdict, l.revision FROM annotations_label l
               JOIN annotations_assignmentitem ai ON ai.id = l.assignment_item_id"""
        ).fetchall()
        (revisions,) = conn.execute("SELECT COUNT(*) FROM annotations_labelrevision").fetchone()
    return {position: (verdict, revision) for position, verdict, revision in rows}, revisions


def test_fifteen_seconds_without_the_database_lose_nothing_and_double_nothing(browser, tmp_path):
    with PrivatePostgres(ports=PG_PORTS) as pg:
        # given a private database, seeded, and the web server on it
        url = pg.create_database("stepaudit")
        seeded = ManagedProcess(
            [sys.executable, "-c", SEED], env=_env(url), cwd=ROOT, log=tmp_path / "seed.log"
        ).start()
        assert seeded.proc.wait(timeout=300) == 0, seeded.output()[-3000:]
        pid = json.loads(seeded.output().strip().splitlines()[-1])["public_id"]
        port = free_port_in(WEB_PORTS)
        web = ManagedProcess(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "auditapp.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--access-logfile",
                "-",
            ],
            env=_env(url),
            cwd=ROOT,
            log=tmp_path / "web.log",
        ).start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(base + "/accounts/login/", timeout=60, process=web)
            context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=base)
            page = context.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # a clinician signs in and labels two items
            page.goto("/accounts/login/")
            page.locator("#id_username").press_sequentially("outage1")
            page.keyboard.press("Tab")
            page.keyboard.type("pw-outage1")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r"/my/$"))
            page.goto(f"/my/{pid}/1/")
            pressed = {}
            for position, (key, verdict) in enumerate((("1", "correct"), ("3", "abstain")), 1):
                page.keyboard.press(key)
                page.keyboard.press("Enter")
                pressed[position] = verdict
                page.wait_for_url(f"**/my/{pid}/{position + 1}/")

            # when the database stops for 15 s while they label three more
            pg.stop()
            stopped_at = time.monotonic()
            for key, verdict in (("c", "correct"), ("a", "abstain"), ("1", "correct")):
                page.keyboard.press(key)
                page.keyboard.press("Enter")
                pressed[len(pressed) + 1] = verdict
            # then the page says plainly that nothing is saved yet
            page.get_by_text("Not saved yet").wait_for()
            time.sleep(max(0.0, 15 - (time.monotonic() - stopped_at)))
            pg.start()

            # then every key lands once the database is back, on its own item, once
            page.wait_for_url(f"**/my/{pid}/6/", timeout=60_000)
            page.locator("#sync[hidden]").wait_for(state="attached", timeout=60_000)
            labels, revisions = _labels(url)
            assert {p: verdict for p, (verdict, _) in labels.items()} == pressed
            assert all(revision == 1 for _, revision in labels.values())
            assert revisions == len(pressed)
            assert page.locator("#done-text").text_content() == f"{len(pressed)} done"
            assert errors == []
            # and the server did see the outage (the page was not just slow)
            assert re.search(r'"PUT [^"]*/label/[^"]*" 5\d\d ', web.output())
            context.close()
        finally:
            web.stop()
