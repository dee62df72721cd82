"""Entrance latency on this machine: warm ``select 1`` round trips and the cold first job.

Against an embedded moto server (as the local stack runs it), with the real LocalRunner:
- cold: first job on a new session (driver process + SparkSession + job), next to a bare
  ``SparkSession.builder.master('local[2]').getOrCreate()`` in a subprocess, timed in the same run;
- warm: ``jobs.new_job`` + ``sessions.dispatch`` of ``select 1`` -> poll the job until Succeed -> read
  result set 0 from S3, 50 times; p50/p95;
- warm over HTTP: the same round trip as a Linkis client makes it against the running local stack
  (``make run``'s process): ``POST /entrance/execute`` -> ``GET /entrance/{execID}/status`` polled ->
  ``GET /jobhistory/{taskID}/get`` -> ``GET /filesystem/openFile`` of the first result set, over one
  keep-alive connection; p50/p95.

Usage: ``.venv/bin/python bench/entrance_bench.py [--runs 50] [--out bench/results/entrance.md]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE = (
    "from pyspark.sql import SparkSession\n"
    "s = SparkSession.builder.master('local[2]').config('spark.ui.enabled', 'false').getOrCreate()\n"
    "s.sql('select 1').collect()\n"
    "print('ready', flush=True)\n"
)


FINAL = ("Succeed", "Failed", "Cancelled", "Timeout")
PHASES: dict[str, list[float]] = {"new_job": [], "new_job+dispatch": [], "until Succeed seen": []}


def _p95(sorted_ms: list[float]) -> float:
    return sorted_ms[max(0, round(0.95 * len(sorted_ms)) - 1)]


def bare_spark_seconds() -> float:
    """Wall time of a fresh process until a bare local[2] SparkSession answered ``select 1``."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", BARE], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "ready":
            break
    elapsed = time.perf_counter() - started
    proc.wait()
    return elapsed


def round_trip(session_id: str, owner: Any) -> tuple[float, dict[str, Any]]:
    """Submit ``select 1``, poll until final, read result set 0; answers the seconds taken and the job."""
    from chalicelib import jobs, sessions
    from chalicelib.store import jobs as job_store

    started = time.perf_counter()
    job = jobs.new_job(jobs.JobRequest(owner=owner, code="select 1", run_type="sql", session_id=session_id))
    PHASES["new_job"].append(time.perf_counter() - started)
    sessions.dispatch(job)
    PHASES["new_job+dispatch"].append(time.perf_counter() - started)
    while True:
        current = job_store.get_job(job["exec_id"])
        assert current is not None
        if current["status"] in jobs.FINAL:
            break
        time.sleep(0.01)
    PHASES["until Succeed seen"].append(time.perf_counter() - started)
    assert current["status"] == "Succeed", current
    document = json.loads(job_store.get_object(job_store.result_prefix(owner.user_id, job["exec_id"]) + "_0.json"))
    assert document["rows"] == [[1]]
    return time.perf_counter() - started, current


class HttpClient:
    """A Linkis-style client on one keep-alive connection to the local stack."""

    def __init__(self, port: int, token: str) -> None:
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; answers the envelope's ``data`` (asserts status 0)."""
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        self.conn.request(method, "/api/rest_j/v1" + path, json.dumps(body) if body is not None else None, headers)
        envelope = json.loads(self.conn.getresponse().read())
        assert envelope["status"] == 0, envelope
        return envelope["data"]


def http_round_trip(client: HttpClient) -> float:
    """Execute ``select 1`` over HTTP, poll status, read the result set; answers the seconds taken."""
    started = time.perf_counter()
    body = {"executionCode": "select 1", "runType": "sql", "executeApplicationName": "spark"}
    ids = client.call("POST", "/entrance/execute", body)
    while (status := client.call("GET", f"/entrance/{ids['execID']}/status")["status"]) not in FINAL:
        time.sleep(0.01)
    assert status == "Succeed", status
    task = client.call("GET", f"/jobhistory/{ids['taskID']}/get")["task"]
    tree = client.call("GET", f"/filesystem/getDirFileTrees?path={quote(task['resultLocation'])}")
    first = tree["dirFileTrees"]["children"][0]["path"]
    content = client.call("GET", f"/filesystem/openFile?path={quote(first)}")
    assert content["fileContent"] == [["1"]] or content["fileContent"] == [[1]], content
    return time.perf_counter() - started


def http_series(runs: int) -> tuple[list[float], float]:
    """Warm HTTP round trips against a fresh local stack; answers them and the cold first one."""
    from tests.e2e.stack import StackProcess

    stack = StackProcess(Path(tempfile.mkdtemp(prefix="sparkgate-bench-stack-")))
    stack.start(timeout=120)
    try:
        client = HttpClient(stack.http_port, stack.login())
        cold = http_round_trip(client)
        for _ in range(3):
            http_round_trip(client)
        return [http_round_trip(client) for _ in range(runs)], cold
    finally:
        stack.stop()


def machine() -> str:
    """nproc, RAM, CPU model."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return f"nproc {os.cpu_count()}, RAM {mem_kb / 1024 / 1024:.1f} GiB, CPU {cpu}, Python {platform.python_version()}"


def main() -> int:
    """Run the bench and write the markdown report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "bench/results/entrance.md"))
    args = parser.parse_args()

    os.environ.update({"SPARKGATE_STAGE": "local", "SPARKGATE_RUNNER": "local", "SPARKGATE_SPARK_MASTER": "local[2]"})
    os.environ["SPARKGATE_STATE_DIR"] = tempfile.mkdtemp(prefix="sparkgate-bench-")
    from chalicelib.local.aws import start_embedded_aws

    server, endpoint = start_embedded_aws()
    from chalicelib import sessions
    from chalicelib.config import settings
    from chalicelib.runners import get_runner
    from chalicelib.store import jobs as job_store
    from chalicelib.store.provision import ensure_table_and_bucket
    from chalicelib.tokens import Principal

    ensure_table_and_bucket(settings())
    owner = Principal("bench", "bench")
    session_id = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        bare = bare_spark_seconds()
        sessions.ensure_session_driver(session_id, owner.user_id, {"master": "local[2]", "idle_timeout_seconds": 300})
        # the session record exists but its driver is starting: the first job waits for the cold start
        cold, _ = round_trip(session_id, owner)
        for _ in range(3):  # let the JIT and caches settle; not counted
            round_trip(session_id, owner)
        for phase in PHASES.values():
            phase.clear()
        warm = [round_trip(session_id, owner)[0] for _ in range(args.runs)]
    finally:
        session = job_store.get_session(session_id)
        sessions.stop_session(session_id)
        if session and session.get("runner_handle"):
            time.sleep(1)
            get_runner().cancel(session["runner_handle"])
        server.stop()
    http_warm, http_cold = http_series(args.runs)
    http_ms = sorted(w * 1000 for w in http_warm)
    warm_ms = sorted(w * 1000 for w in warm)
    p50 = statistics.median(warm_ms)
    p95 = _p95(warm_ms)
    http_p50 = statistics.median(http_ms)
    ratio = cold / bare
    phases = ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in PHASES.items())
    load = Path("/proc/loadavg").read_text().split()[:3]
    report = f"""# Entrance bench

Machine: {machine()} (shared with other engineers' Spark runs while measured; load average at the end {" ".join(load)}).
Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.
Command: `.venv/bin/python bench/entrance_bench.py --runs {args.runs}`
Setup: embedded moto server on loopback ({endpoint.split(":")[0]}), LocalRunner driver process, master local[2];
the HTTP rows against the local stack process (`python -m chalicelib.local.stack`), client on one keep-alive connection.

| measure | figure | target |
|---|---|---|
| warm round trip p50 (submit `select 1` -> Succeed -> result set read) | {p50:.0f} ms | < 250 ms |
| warm round trip p95 | {p95:.0f} ms | |
| warm min / max | {warm_ms[0]:.0f} / {warm_ms[-1]:.0f} ms | |
| warm HTTP round trip p50 (execute, status polls, jobhistory, file tree, openFile) | {http_p50:.0f} ms | < 250 ms |
| warm HTTP round trip p95 | {_p95(http_ms):.0f} ms | |
| first HTTP job on the fresh local stack (session start included) | {http_cold:.2f} s | |
| cold first job (new session: driver process + SparkSession + job + result) | {cold:.2f} s | |
| bare `SparkSession.builder.master('local[2]').getOrCreate()` + `select 1`, fresh process | {bare:.2f} s | |
| cold / bare | {ratio:.2f}x | <= 1.5x |

Warm p50 by phase (cumulative from submit): {phases}.

Runs: {args.runs} warm in-process and {args.runs} warm over HTTP (each after 3 unrecorded), 1 cold, 1 bare,
all in the same run.
"""
    Path(args.out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
