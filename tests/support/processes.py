"""Start and stop real processes (worker, web, fake LLM server) for tests and benchmarks."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedProcess:
    def __init__(self, cmd: list[str], *, env: dict, cwd: Path, log: Path):
        self.cmd, self.env, self.cwd, self.log = cmd, env, cwd, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, needle: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[:4]} exited early:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(
            f"no {needle!r} from {self.cmd[:4]} in {timeout}s:\n{self.output()[-3000:]}"
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a prefork worker's children die with it)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if getattr(self, "_log_file", None):
            self._log_file.close()


def wait_for_http(url: str, *, timeout: float, process: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # the server answered
        except OSError:
            if process and process.proc and process.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{process.output()[-3000:]}") from None
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s")
