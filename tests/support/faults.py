"""Private PostgreSQL and Redis servers that fault tests and the bench kill and restart.

Never the machine's shared servers: each instance is a fresh ``initdb`` in a temporary folder
or a ``redis-server`` with no persistence, on a port of ``STEPAUDIT_FAULT_PORTS`` (default
21100-21199), stopped when the test ends. ``FaultStack`` puts the app on them as processes —
migrated database, seed data, Celery workers, beat, gunicorn, the fake LLM endpoint — the
production shape, so what is measured is what a deployment sees.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import ManagedProcess, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


def _port_range() -> range:
    raw = os.environ.get("STEPAUDIT_FAULT_PORTS", "21100-21199")
    low, high = (int(p) for p in raw.split("-"))
    return range(low, high + 1)


_taken: set[int] = set()


def port_in_range() -> int:
    """A free 127.0.0.1 port in the fault range (not handed out before in this process)."""
    for port in _port_range():
        if port in _taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port in STEPAUDIT_FAULT_PORTS")


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def servers_missing() -> str | None:
    """Why private servers cannot start here, or None."""
    if not shutil.which("redis-server"):
        return "redis-server is not installed"
    if not _postgres_bin("initdb") or not _postgres_bin("pg_ctl"):
        return "PostgreSQL's initdb / pg_ctl are not installed"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser (initdb refuses root)"
    return None


def _wait_port(port: int, *, up: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            is_up = sock.connect_ex(("127.0.0.1", port)) == 0
        if is_up == up:
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not {'up' if up else 'down'} after {timeout}s")


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = port_in_range()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait_port(self.port, up=True, timeout=20)
        return self

    def kill(self) -> None:
        """SIGKILL: every key is gone (no persistence), as in a crash or a fresh container."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        _wait_port(self.port, up=False, timeout=10)

    def stop(self) -> None:
        self.kill()


class PrivatePostgres:
    def __init__(self, workdir: Path) -> None:
        self.port = port_in_range()
        # Its own folder under the system's temporary directory: as root, initdb runs as the
        # postgres user, who cannot enter pytest's private tmp_path.
        self.base = Path(tempfile.mkdtemp(prefix="stepaudit-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.log = self.base / "postgres.log"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/stepaudit"
        self.admin_url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        full = list(cmd)
        if os.geteuid() == 0:
            full = ["runuser", "-u", "postgres", "--", *full]
        return subprocess.run(full, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> PrivatePostgres:
        if not (self.data / "PG_VERSION").exists():
            self.sockets.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.base, "postgres", "postgres")
                shutil.chown(self.sockets, "postgres", "postgres")
            self._run(_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                      "--auth=trust", "--no-sync", "-E", "UTF8")  # fmt: skip
        self._run(
            _postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockets} -c fsync=off "
            # fsync off is safe for a killed server process (the OS keeps what was written);
            # synchronous_commit must stay on, or a crash loses commits already acknowledged.
            "-c full_page_writes=off -c max_connections=200",
            "start",
        )  # fmt: skip
        _wait_port(self.port, up=True, timeout=30)
        return self

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE stepaudit")

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every connection drops, as in a crash."""
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                  "stop", check=False)  # fmt: skip
        _wait_port(self.port, up=False, timeout=20)

    def stop(self) -> None:
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                  "stop", check=False)  # fmt: skip
        shutil.rmtree(self.base, ignore_errors=True)


SEED = r"""
import json, sys
from pathlib import Path
import django
django.setup()
from annotations.roles import Role
from annotations.services.audits import audit_create
from annotations.services.batches import batch_build, batch_assign
from annotations.services.imports import import_file
from annotations.services.users import user_create_or_update
from judges.services import judge_create_or_update

base_url, traces = sys.argv[1], Path(sys.argv[2])
audit = audit_create(slug="faults", name="Fault drills")
import_file(audit=audit, path=traces, segmenter_names=["given", "sentences"])
admin = user_create_or_update(username="admin1", role=Role.ADMIN, password="pw-admin1")
clinician = user_create_or_update(username="clin1", role=Role.CLINICIAN, password="pw-clin1")
batch = batch_build(audit=audit, name="drill", size=40, segmentation="given", overlap=1,
                    created_by=admin)
(assignment,) = batch_assign(batch=batch, annotators=[clinician], confirm_leak=True)
judge_create_or_update(spec={
    "name": "drill-judge", "base_url": base_url, "model": "fake-judge",
    "max_concurrency": 8, "parallel_chunks": 2, "timeout_s": 2.0, "max_retries": 8,
    "max_parse_retries": 2,
})
print(json.dumps({"assignment": assignment.public_id, "items": assignment.items.count()}))
"""


class FaultStack:
    """The app on private servers, as processes. Use as a context manager."""

    def __init__(self, workdir: Path, *, fake_latency_ms: int = 50) -> None:
        self.workdir = workdir
        self.fake_latency_ms = fake_latency_ms
        self.redis = PrivateRedis(workdir)
        self.postgres = PrivatePostgres(workdir)
        self.processes: list[ManagedProcess] = []
        self.web_url = ""
        self.fake_url = ""
        self.seed: dict = {}

    # -- environment ---------------------------------------------------------------------------
    def env(self, extra: dict | None = None) -> dict:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_URL", "REDIS_URL", "PYTEST", "DJANGO_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="auditapp.settings.test",
            PYTHONPATH=str(ROOT),
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            DEBUG="1",
            STEPAUDIT_VAR_DIR=str(self.workdir / "var"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra or {})
        return env

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(),
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def _spawn(self, name: str, cmd: list[str], extra_env: dict | None = None) -> ManagedProcess:
        proc = ManagedProcess(
            cmd, env=self.env(extra_env), cwd=ROOT, log=self.workdir / f"{name}.log"
        ).start()
        proc.name = name
        self.processes.append(proc)
        return proc

    # -- the stack -------------------------------------------------------------------------------
    def start(self, *, workers: int = 2, web: bool = True, beat: bool = True) -> FaultStack:
        self.redis.start()
        self.postgres.start()
        self.postgres.create_database()
        fake_port = port_in_range()
        fake = self._spawn(
            "fake",
            [sys.executable, "-m", "judges.clients.fake_server", "--port", str(fake_port),
             "--latency-ms", str(self.fake_latency_ms), "--jitter-ms", "0"],
        )  # fmt: skip
        self.fake_url = f"http://127.0.0.1:{fake_port}/v1"
        migrated = self.manage("migrate", "--no-input")
        if migrated.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{migrated.stderr[-3000:]}")
        seeded = subprocess.run(
            [sys.executable, "-c", SEED, self.fake_url, str(ROOT / "docs/examples/traces.jsonl")],
            cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if seeded.returncode != 0:
            raise RuntimeError(f"seed failed:\n{seeded.stderr[-3000:]}")
        self.seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        wait_for_http(self.fake_url.removesuffix("/v1") + "/v1/models", timeout=30, process=fake)
        for i in range(workers):
            self.start_worker(f"w{i}")
        if beat:
            self._spawn(
                "beat",
                [sys.executable, "-m", "celery", "-A", "auditapp", "beat", "--loglevel=INFO",
                 "--schedule", str(self.workdir / "celerybeat-schedule")],
            )  # fmt: skip
        if web:
            port = port_in_range()
            proc = self._spawn(
                "web",
                [sys.executable, "-m", "gunicorn", "auditapp.wsgi:application", "--bind",
                 f"127.0.0.1:{port}", "--workers", "2", "--threads", "2",
                 "--access-logfile", "-"],
            )  # fmt: skip
            self.web_url = f"http://127.0.0.1:{port}"
            wait_for_http(self.web_url + "/healthz", timeout=60, process=proc)
        return self

    def start_worker(self, name: str) -> ManagedProcess:
        # No -Q: the queues are declared, a plain worker consumes them all.
        proc = self._spawn(
            f"worker-{name}-{len(self.processes)}",
            [sys.executable, "-m", "celery", "-A", "auditapp", "worker", "--loglevel=INFO",
             "--concurrency=1", "--pool=prefork", f"--hostname={name}@%h",
             "--without-gossip", "--without-mingle"],
        )  # fmt: skip
        proc.wait_for_log("ready", timeout=90)
        return proc

    def workers(self) -> list[ManagedProcess]:
        return [
            p
            for p in self.processes
            if p.name.startswith("worker") and p.proc and p.proc.poll() is None
        ]

    def stop(self) -> None:
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception:  # tear everything down whatever fails
                proc.kill()
        self.redis.stop()
        self.postgres.stop()

    def __enter__(self) -> FaultStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-tail:]}" for p in self.processes)

    # -- the database, read from outside ---------------------------------------------------------
    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.postgres.url, connect_timeout=3) as conn:
            return conn.execute(query, params).fetchall()

    def sql_retrying(self, query: str, params: tuple = (), timeout: float = 60) -> list[tuple]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.sql(query, params)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def verdict_count(self, run_id: int) -> int:
        return self.sql("SELECT count(*) FROM judges_judgeverdict WHERE run_id = %s", (run_id,))[0][
            0
        ]

    def run_row(self, run_id: int) -> dict:
        rows = self.sql(
            "SELECT status, done, failed, total, generation, message FROM judges_judgerun "
            "WHERE id = %s",
            (run_id,),
        )
        status, done, failed, total, generation, message = rows[0]
        return dict(
            status=status, done=done, failed=failed, total=total, generation=generation,
            message=message,
        )  # fmt: skip

    def one_verdict_per_step(self, run_id: int) -> tuple[int, int, int]:
        """(steps in scope, steps with a verdict, steps with more than one)."""
        (scope,) = self.sql(
            "SELECT count(*) FROM annotations_step s JOIN judges_judgerun r ON r.audit_id = "
            "s.audit_id WHERE r.id = %s AND s.segmentation = r.segmentation AND s.id <= "
            "r.scope_max_step_id",
            (run_id,),
        )[0]
        rows = self.sql(
            "SELECT step_id, count(*) FROM judges_judgeverdict WHERE run_id = %s GROUP BY step_id",
            (run_id,),
        )
        return scope, len(rows), sum(1 for _, n in rows if n > 1)


# -- drills: one fault during a judge run, timed ---------------------------------------------------
RECOVERED_AFTER = 16  # new verdicts after the service is back that count as "flowing again"


def run_start(stack: FaultStack, *, segmentation: str = "given") -> int:
    done = stack.manage("run_judge", "--audit", "faults", "--judge", "drill-judge",
                        "--segmentation", segmentation)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"run_judge failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    return int(done.stdout.split()[1].rstrip(":"))


def _count_when_readable(stack: FaultStack, run_id: int) -> int:
    return stack.sql_retrying(
        "SELECT count(*) FROM judges_judgeverdict WHERE run_id = %s", (run_id,)
    )[0][0]


def fault_apply(stack: FaultStack, fault: str, *, outage_s: float) -> None:
    """Break one service, keep it down ``outage_s``, bring it back (returns once it is back)."""
    if fault == "redis":
        stack.redis.kill()
        time.sleep(outage_s)
        stack.redis.start()
    elif fault == "postgres":
        stack.postgres.crash()
        time.sleep(outage_s)
        stack.postgres.start()
    elif fault in ("worker", "worker+redis"):
        # Every worker, SIGKILL on its process group: all lanes die with their claims. "Back"
        # is one new worker ready (it takes every lane in turn).
        for proc in stack.workers():
            proc.kill()
        if fault == "worker+redis":
            stack.redis.kill()
        time.sleep(outage_s)
        if fault == "worker+redis":
            stack.redis.start()
        stack.start_worker(f"rescuer{len(stack.processes)}")
    else:
        raise ValueError(f"unknown fault {fault!r}")


def drill(
    stack: FaultStack,
    fault: str,
    *,
    outage_s: float = 2.0,
    after_verdicts: int = 40,
    timeout_s: float = 120,
) -> dict:
    """Start a run, break ``fault`` once it has ``after_verdicts`` verdicts, time the recovery.

    Time to recover: from the service being back (the server accepts connections again, or
    the new worker is ready) until ``RECOVERED_AFTER`` verdicts more than at that moment are
    stored. Then waits for the run to end and checks one verdict per step.
    """
    run_id = run_start(stack)
    started = time.monotonic()
    while _count_when_readable(stack, run_id) < after_verdicts:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"run {run_id} never reached {after_verdicts} verdicts")
        time.sleep(0.05)
    at_fault = _count_when_readable(stack, run_id)
    fault_apply(stack, fault, outage_s=outage_s)
    back = time.monotonic()
    base = _count_when_readable(stack, run_id)
    recovered_s = None
    while time.monotonic() - back < timeout_s:
        count = _count_when_readable(stack, run_id)
        row = stack.run_row(run_id)
        if count >= base + RECOVERED_AFTER or (row["status"] == "done" and count > base):
            recovered_s = time.monotonic() - back
            break
        if row["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    while time.monotonic() - back < timeout_s:
        row = stack.run_row(run_id)
        if row["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.2)
    scope, judged, duplicated = stack.one_verdict_per_step(run_id)
    return {
        "fault": fault,
        "run": run_id,
        "outage_s": outage_s,
        "verdicts_at_fault": at_fault,
        "verdicts_when_back": base,
        "recovered_s": None if recovered_s is None else round(recovered_s, 2),
        "status": stack.run_row(run_id)["status"],
        "steps": scope,
        "steps_with_verdict": judged,
        "steps_with_duplicates": duplicated,
        "run_s": round(time.monotonic() - started, 1),
    }
