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
- with ``--before <checkout>`` (a ``git worktree`` of an older commit), the HTTP rows are measured
  side by side: rounds alternate between that checkout's local stack and this tree's (ABAB...), each
  on a fresh stack, with the load average recorded per round.

Usage: ``.venv/bin/python bench/entrance_bench.py [--runs 50] [--before /tmp/old --rounds 3]
[--out bench/results/entrance.md]``
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
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from chalicelib.records import JobRecord

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


def round_trip(session_id: str, owner: Any) -> tuple[float, JobRecord]:
    """Submit ``select 1``, poll until final, read result set 0; answers the seconds taken and the job."""
    from chalicelib import jobs, submit
    from chalicelib.store import jobs as job_store
    from chalicelib.store import results as result_store

    started = time.perf_counter()
    job = jobs.new_job(jobs.JobRequest(owner=owner, code="select 1", run_type="sql", session_id=session_id))
    PHASES["new_job"].append(time.perf_counter() - started)
    submit.dispatch(job)  # the product's dispatch: the session driver, then its doorbell
    PHASES["new_job+dispatch"].append(time.perf_counter() - started)
    while True:
        current = job_store.get_job(job["exec_id"])
        assert current is not None
        if current["status"] in jobs.FINAL:
            break
        time.sleep(0.01)
    PHASES["until Succeed seen"].append(time.perf_counter() - started)
    assert current["status"] == "Succeed", current
    document = json.loads(
        result_store.get_object(result_store.result_prefix(owner.user_id, job["exec_id"]) + "_0.json")
    )
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


def http_round_trip(client: HttpClient, phases: dict[str, list[float]] | None = None) -> float:
    """Execute ``select 1`` over HTTP, poll status, read the result set; answers the seconds taken.

    ``phases`` (if given) gets the cumulative time of each step appended.
    """
    started = time.perf_counter()
    marks: list[tuple[str, float]] = []
    body = {"executionCode": "select 1", "runType": "sql", "executeApplicationName": "spark"}
    ids = client.call("POST", "/entrance/execute", body)
    marks.append(("execute", time.perf_counter()))
    while (status := client.call("GET", f"/entrance/{ids['execID']}/status")["status"]) not in FINAL:
        time.sleep(0.01)
    marks.append(("until Succeed seen", time.perf_counter()))
    assert status == "Succeed", status
    task = client.call("GET", f"/jobhistory/{ids['taskID']}/get")["task"]
    tree = client.call("GET", f"/filesystem/getDirFileTrees?path={quote(task['resultLocation'])}")
    first = tree["dirFileTrees"]["children"][0]["path"]
    content = client.call("GET", f"/filesystem/openFile?path={quote(first)}")
    assert content["fileContent"] == [["1"]] or content["fileContent"] == [[1]], content
    marks.append(("+ jobhistory, file tree, openFile", time.perf_counter()))
    if phases is not None:
        for name, at in marks:
            phases.setdefault(name, []).append(at - started)
    return time.perf_counter() - started


def http_series(
    runs: int, tree: Path = ROOT, phases: dict[str, list[float]] | None = None
) -> tuple[list[float], float]:
    """Warm HTTP round trips against a fresh local stack of ``tree``; answers them and the cold first one."""
    from tests.e2e.stack import StackProcess

    stack = StackProcess(Path(tempfile.mkdtemp(prefix="sparkgate-bench-stack-")), tree=tree)
    stack.start(timeout=180)
    try:
        client = HttpClient(stack.http_port, stack.login())
        cold = http_round_trip(client)
        for _ in range(3):
            http_round_trip(client)
        return [http_round_trip(client, phases) for _ in range(runs)], cold
    finally:
        stack.stop()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def tree_label(tree: Path) -> str:
    """A checkout's short commit, or the first line of its ``SNAPSHOT`` note (a copied tree), or its path."""
    found = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if found.returncode == 0 and tree.resolve() == Path(
        subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--show-toplevel"], capture_output=True, text=True
        ).stdout.strip()
        or "/"
    ):
        return found.stdout.strip()
    note = tree / "SNAPSHOT"
    return f"{tree}: {note.read_text().strip()}" if note.exists() else str(tree)


def side_by_side(before: Path, rounds: int, runs: int, after: Path = ROOT) -> str:
    """HTTP round trips on ``before``'s stack and ``after``'s, alternating; answers the report section."""
    trees = {"before": before.resolve(), "after": after.resolve()}
    trips: dict[str, list[float]] = {"before": [], "after": []}
    phases: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    lines = []
    for n in range(rounds):
        for name, tree in trees.items():
            at_start = load_average()
            warm, _ = http_series(runs, tree, phases[name])
            ms = sorted(w * 1000 for w in warm)
            trips[name].extend(ms)
            lines.append(
                f"| {n + 1} | {name} | {statistics.median(ms):.0f} | {_p95(ms):.0f} | {at_start} | {load_average()} |"
            )
    result = {name: sorted(values) for name, values in trips.items()}
    p50 = {name: statistics.median(values) for name, values in result.items()}
    commit, after_commit = (tree_label(tree) for tree in trees.values())
    rows = {
        name: f"{p50[name]:.0f} ms | {_p95(values):.0f} ms | {values[0]:.0f} / {values[-1]:.0f} ms"
        for name, values in result.items()
    }
    split = {
        name: ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in by_phase.items())
        for name, by_phase in phases.items()
    }
    return (
        f"""
## Over HTTP, side by side

- before: {commit}
- after: {after_commit}

{rounds} rounds, alternating before/after, each on a fresh local stack: {runs} warm round trips
(after 3 unrecorded); p50/p95 over all rounds of a tree.

| tree | HTTP p50 | HTTP p95 | min / max |
|---|---|---|---|
| before | {rows["before"]} |
| after | {rows["after"]} |
| after / before (p50) | {p50["after"] / p50["before"]:.2f}x | | |

Warm HTTP p50 by step (cumulative from submit): before: {split["before"]}; after: {split["after"]}.

| round | tree | p50 ms | p95 ms | load average at start | at end |
|---|---|---|---|---|---|
"""
        + "\n".join(lines)
        + "\n"
    )


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
    parser.add_argument("--before", type=Path, help="a checkout to measure the HTTP round trip against")
    parser.add_argument("--after", type=Path, default=ROOT, help="the checkout compared with --before (default: this)")
    parser.add_argument("--rounds", type=int, default=3, help="side-by-side rounds per tree (with --before)")
    args = parser.parse_args()
    load_at_start = load_average()

    os.environ.update({"SPARKGATE_STAGE": "local", "SPARKGATE_RUNNER": "local", "SPARKGATE_SPARK_MASTER": "local[2]"})
    os.environ["SPARKGATE_STATE_DIR"] = tempfile.mkdtemp(prefix="sparkgate-bench-")
    from chalicelib.local.aws import start_embedded_aws

    server, endpoint = start_embedded_aws()
    from chalicelib import sessions
    from chalicelib.config import settings
    from chalicelib.runners import get_runner
    from chalicelib.store import sessions as session_store
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
        session = session_store.get_session(session_id)
        sessions.stop_session(session_id)
        handle = session.get("runner_handle") if session else None
        if handle:
            time.sleep(1)
            get_runner().cancel(handle)
        server.stop()
    http_phases: dict[str, list[float]] = {}
    http_warm, http_cold = http_series(args.runs, phases=http_phases)
    compared = side_by_side(args.before, args.rounds, args.runs, args.after) if args.before else ""
    http_ms = sorted(w * 1000 for w in http_warm)
    warm_ms = sorted(w * 1000 for w in warm)
    p50 = statistics.median(warm_ms)
    p95 = _p95(warm_ms)
    http_p50 = statistics.median(http_ms)
    ratio = cold / bare
    phases = ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in PHASES.items())
    http_split = ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in http_phases.items())
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "chalicelib", "app.py"], capture_output=True, text=True
    ).stdout.strip()
    at = f"commit {commit.stdout.strip()}" + (" (with uncommitted changes under chalicelib/)" if dirty else "")
    loads = f"load average at the start {load_at_start}, at the end {load_average()}"
    command = f"--runs {args.runs}"
    if args.before:
        command += f" --before {args.before}" + (f" --after {args.after}" if args.after != ROOT else "")
        command += f" --rounds {args.rounds}"
    report = f"""# Entrance bench

Machine: {machine()} (shared with other engineers' Spark runs while measured; {loads}).
Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}; {at}.
Command: `.venv/bin/python bench/entrance_bench.py {command}`
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
Warm HTTP p50 by step (cumulative from submit): {http_split}.

Runs: {args.runs} warm in-process and {args.runs} warm over HTTP (each after 3 unrecorded), 1 cold, 1 bare,
all in the same run.
{compared}"""
    Path(args.out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
