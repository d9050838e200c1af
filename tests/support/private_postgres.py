"""A private PostgreSQL server for fault tests: initdb into a temporary folder, started and
stopped by the test (never the machine's shared server).

    with PrivatePostgres(ports=range(21500, 21550)) as pg:
        url = pg.create_database("stepaudit")
        pg.stop()   # the outage
        pg.start()
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin_dir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise FileNotFoundError("no initdb (apt-get install postgresql)")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_in(ports) -> int:
    for port in ports:
        if port_free(port):
            return port
    raise RuntimeError(f"no free port in {ports}")


class PrivatePostgres:
    def __init__(self, *, ports):
        self.bin = _bin_dir()
        self.port = free_port_in(ports)
        self.dir = Path(tempfile.mkdtemp(prefix="stepaudit-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        # PostgreSQL refuses to run as root: as root, run it as the postgres user.
        self.as_user = None
        if os.geteuid() == 0:
            self.as_user = "postgres"
            entry = pwd.getpwnam(self.as_user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> "PrivatePostgres":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __enter__(self) -> "PrivatePostgres":
        self.init()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
