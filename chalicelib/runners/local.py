"""LocalRunner: the engine as a child process on this machine (Spark ``local[*]`` or any master URL).

``python -m chalicelib.engine ...`` with pyspark launching the JVM is spark-submit's client mode.
The handle holds the pid and the process start time (from ``/proc``), so a reused pid is never
mistaken for the driver; the driver's stdout/stderr go to ``<state_dir>/drivers/<name>.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from chalicelib.config import Settings, settings
from chalicelib.records import JobRecord, SessionRecord
from chalicelib.runners.base import Probe, Runner, RunnerError, batch_args, pool_args, session_args

PROJECT_DIR = Path(__file__).resolve().parents[2]
TERM_GRACE_SECONDS = 5.0

# Children this process started: polled so they never linger as zombies (a zombie still answers kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILD_START: dict[int, int | None] = {}  # pid -> start time, so a recycled pid never borrows an old exit code
_LOCK = threading.Lock()


def _proc_start_time(pid: int) -> int | None:
    """The process start time in clock ticks (``/proc/<pid>/stat`` field 22), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[19])


def _proc_state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()[0]


class LocalRunner(Runner):
    """Runs drivers as local processes."""

    name = "local"

    def __init__(
        self, cfg: Settings | None = None, command: list[str] | None = None, term_grace: float = TERM_GRACE_SECONDS
    ) -> None:
        self.cfg = cfg or settings()
        self.command = command or [sys.executable, "-m", "chalicelib.engine"]
        self.term_grace = term_grace

    # -- starting -------------------------------------------------------------------------------

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(PROJECT_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env["SPARKGATE_STATE_DIR"] = str(self.cfg.state_dir.resolve())
        env["PYTHONUNBUFFERED"] = "1"
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def _spawn(self, args: list[str], name: str, master: str, envs: dict[str, str]) -> dict[str, Any]:
        return self.spawn([*self.command, *args, "--master", master, "--doorbell"], name, envs)

    def spawn(self, command: list[str], name: str, envs: dict[str, str] | None = None) -> dict[str, Any]:
        """Start ``command`` in its own process group, output to ``<state_dir>/drivers/<name>.log``; its handle."""
        drivers = self.cfg.state_dir.resolve() / "drivers"
        drivers.mkdir(parents=True, exist_ok=True)
        log_path = drivers / f"{name}.log"
        with open(log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env(envs or {}),
                    start_new_session=True,  # its own process group: cancel reaches the JVM too
                )
            except OSError as err:
                raise RunnerError(f"could not start {command[0]}: {err}") from err
        start_time = _proc_start_time(proc.pid)
        with _LOCK:
            _CHILDREN[proc.pid] = proc
            _CHILD_START[proc.pid] = start_time
        # reaped the moment it exits (no zombie); the exit code stays readable through ``proc``
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
        return {
            "runner": self.name,
            "pid": proc.pid,
            "start_time": start_time,
            "log_path": str(log_path),
            "started_at": time.time(),
        }

    def start_session(self, session: SessionRecord) -> dict[str, Any]:
        """Start ``python -m chalicelib.engine session ...`` for ``session``."""
        config = session.get("config") or {}
        master = str(config.get("master") or self.cfg.spark_master)
        name = f"session-{session['session_id']}-g{int(session['generation'])}"
        return self._spawn(session_args(session), name, master, dict(config.get("envs") or {}))

    def start_batch(self, job: JobRecord) -> dict[str, Any]:
        """Start ``python -m chalicelib.engine batch --exec-id ...`` for ``job``."""
        config = job.get("session_config") or {}
        master = str(config.get("master") or self.cfg.spark_master)
        return self._spawn(batch_args(job), f"batch-{job['exec_id']}", master, dict(config.get("envs") or {}))

    def start_artefact(self, job: JobRecord) -> dict[str, Any]:
        """Start the artefact supervisor ``python -m chalicelib.runners.jar --exec-id ...`` for ``job``."""
        command = [sys.executable, "-m", "chalicelib.runners.jar", "--exec-id", str(job["exec_id"])]
        return self.spawn(command, f"artefact-{job['exec_id']}")

    def start_pool(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Start ``python -m chalicelib.engine pool --pool-id ...`` (a warm driver, see ``chalicelib.pool``)."""
        return self._spawn(pool_args(entry), f"pool-{entry['pool_id']}", self.cfg.spark_master, {})

    def wake(self, handle: dict[str, Any]) -> None:
        """SIGUSR1 to the driver (its doorbell: it looks at the store at once instead of at its next poll)."""
        if handle.get("runner") == self.name and "pid" in handle and self._same_process(handle):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(handle["pid"]), signal.SIGUSR1)

    # -- watching -------------------------------------------------------------------------------

    def _same_process(self, handle: dict[str, Any]) -> bool:
        pid = int(handle["pid"])
        expected = handle.get("start_time")
        actual = _proc_start_time(pid)
        return actual is not None and (expected is None or int(expected) == actual)

    def probe(self, handle: dict[str, Any]) -> Probe:
        """``running`` while the process lives; ``finished``/``failed`` by exit code once it is gone."""
        if handle.get("runner") != self.name or "pid" not in handle:
            return "unknown"
        pid = int(handle["pid"])
        start = handle.get("start_time")
        with _LOCK:
            child = _CHILDREN.get(pid)
            if child is not None and start is not None and _CHILD_START.get(pid, int(start)) != int(start):
                child = None
        if child is not None:  # ours: the exit code is known (and the zombie reaped)
            code = child.poll()
            if code is None:
                return "running"
            return "finished" if code == 0 else "failed"
        if not self._same_process(handle):
            return "finished"  # gone (another process started it, so its exit code is not ours to read)
        return "finished" if _proc_state(pid) in ("Z", "X") else "running"

    def cancel(self, handle: dict[str, Any]) -> None:
        """SIGTERM the driver's process group, then SIGKILL after a grace period."""
        if handle.get("runner") != self.name or "pid" not in handle or not self._same_process(handle):
            return
        pid = int(handle["pid"])
        for sig, grace in ((signal.SIGTERM, self.term_grace), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self.probe(handle) != "running":
                    return
                time.sleep(0.05)


def stop_children(grace: float = TERM_GRACE_SECONDS) -> int:
    """SIGTERM every driver this process started (its process group), SIGKILL what outlives ``grace``.

    The local stack calls it first when it stops, while the embedded AWS still answers the drivers'
    last writes. Answers how many were still running.
    """
    with _LOCK:
        live = [proc for proc in _CHILDREN.values() if proc.poll() is None]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for proc in live:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(proc.poll() is None for proc in live):
            time.sleep(0.05)
    return len(live)
