"""Artefact runs (SPARK_JAR, FLINK_JAR, FLINK_SQL): ``spark-submit`` / ``flink`` instead of the engine.

Kept apart from the engine on purpose: a jar is not Python, so there is no engine code to run.

- :func:`start_artefact_run` asks the runner (``chalicelib.runners.runner``) to start the run
  (``Runner.start_artefact``) and stores the handle it answers.
- Locally, the LocalRunner starts ``python -m chalicelib.runners.jar --exec-id ID``, a tiny
  supervisor that moves the Job to Running, runs ``spark-submit --class <main> <jar> <args>`` in the
  owner's sandbox (:mod:`chalicelib.runners.spark_jar`: their uid, no credentials) (Flink
  works: a sandboxed local Flink, :mod:`chalicelib.runners.flink`), copies its output into the Job
  log, honours ``cancel_requested`` and ends the Job Succeed / Failed / Cancelled. Its handle is a
  LocalRunner handle, so the LocalRunner probes and cancels it.
- On EMR, the EmrRunner builds the ``command-runner.jar`` step (spark-submit, or flink for Flink
  works; ``EmrRunner.artefact_step``) and adds it to the cluster under the owner's runtime role.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from chalicelib.config import settings
from chalicelib.records import JobFields, JobRecord
from chalicelib.runners.base import RunnerError

TAIL_LINES = 20


def local_java_major() -> int | None:
    """The major version of ``java`` on this machine (``JAVA_HOME`` first), or None."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def spark_submit_path() -> str:
    """``$SPARK_HOME/bin/spark-submit``, else the one shipped in the pyspark package (found, not imported)."""
    home = os.environ.get("SPARK_HOME")
    if home and (Path(home) / "bin" / "spark-submit").exists():
        return str(Path(home) / "bin" / "spark-submit")
    spec = importlib.util.find_spec("pyspark")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "spark-submit"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("spark-submit")
    if found:
        return found
    raise RunnerError("spark-submit not found: set SPARK_HOME or install pyspark")


def emr_step(job: JobRecord) -> dict[str, Any]:
    """The EMR step that runs ``job``'s artefact: ``EmrRunner.artefact_step`` (the one place that knows it)."""
    from chalicelib.runners.emr import EmrRunner

    return EmrRunner.artefact_step(job)


def start_artefact_run(job: JobRecord) -> dict[str, Any]:
    """Start ``job``'s artefact run through the runner (``runners.runner().start_artefact``); stores and
    answers its handle."""
    from chalicelib.runners import runner
    from chalicelib.store import jobs as job_store

    handle = runner().start_artefact(job)
    job_store.update_job_fields(str(job["exec_id"]), {"runner_handle": handle})
    return handle


# ---- the local supervisor (runs as its own process) ------------------------------------------------


def _supervise(exec_id: str) -> int:
    from chalicelib.store import jobs as job_store
    from chalicelib.store import logs as log_store
    from chalicelib.timeutil import now_iso

    job = job_store.get_job(exec_id)
    if job is None:
        return 2
    running = job_store.transition(
        exec_id, ("Inited", "Scheduled", "WaitForRetry"), "Running", {"started_at": now_iso()}
    )
    if running is None:
        return 0  # cancelled (or taken) before it started
    if (job.get("artefact_run") or {}).get("engine") == "flink":
        from chalicelib.runners import flink

        return flink.supervise(running)  # sandboxed, on the local Flink (chalicelib/runners/flink.py)
    from chalicelib.runners import spark_jar
    from chalicelib.runners.flink import remove_run_folder

    master = str((job.get("session_config") or {}).get("master") or settings().spark_master)
    lines: list[str] = []
    written = 0
    try:
        proc = spark_jar.start(job, master)  # sandboxed: the owner's uid, no credentials
    except (OSError, RunnerError) as err:
        log_store.append_log(exec_id, 0, [("ERROR", str(err))])
        job_store.transition(
            exec_id, ("Running",), "Failed", {"error": str(err), "ended_at": now_iso(), "log_lines": 1}
        )
        return 1

    def stop(*_: Any) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    cancelled = False
    while proc.poll() is None:
        time.sleep(0.5)
        if len(lines) > written:
            chunk = [("INFO", line.rstrip("\n")) for line in lines[written:]]
            if log_store.append_log(exec_id, written, chunk):
                written += len(chunk)
                job_store.update_job_fields(exec_id, {"log_lines": written})
        fresh = job_store.get_job(exec_id)
        if fresh is None or fresh.get("cancel_requested") or fresh.get("status") != "Running":
            cancelled = True
            stop()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=5)
    remove_run_folder(spark_jar.run_tmp(str(job["owner"]), exec_id))
    if len(lines) > written:
        chunk = [("INFO", line.rstrip("\n")) for line in lines[written:]]
        if log_store.append_log(exec_id, written, chunk):
            written += len(chunk)
    end: JobFields = {"ended_at": now_iso(), "log_lines": written, "progress": 1}
    if cancelled:
        job_store.transition(exec_id, ("Running",), "Cancelled", {**end, "error": "cancelled by user"})
    elif proc.returncode == 0:
        job_store.transition(exec_id, ("Running",), "Succeed", end)
    else:
        tail = "\n".join(line.rstrip("\n") for line in lines[-TAIL_LINES:])
        error = f"spark-submit exited with code {proc.returncode}\n{tail}"
        job_store.transition(exec_id, ("Running",), "Failed", {**end, "error": error, "error_code": 21304})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m chalicelib.runners.jar --exec-id ID``."""
    parser = argparse.ArgumentParser(prog="chalicelib.runners.jar")
    parser.add_argument("--exec-id", required=True)
    return _supervise(parser.parse_args(argv).exec_id)


if __name__ == "__main__":
    sys.exit(main())
