"""Many users at once on the local stack: works CRUD and entrance jobs, every answer checked to be the caller's.

Starts the real local stack as a subprocess (free loopback ports, temporary state, as
``tests/e2e/stack.py`` does), creates ``--users`` users, then runs ``--clients`` client threads
(spread round-robin over the users, each with its own keep-alive connection) for ``--seconds`` or
``--requests`` requests per client, whichever ends first. Each client loops over: create a work
(a name of its own), read it back, list its user's works, patch it with ``If-Match``, read a work
of another user (must be 404), and every ``--job-every`` iterations submit an entrance ``select 1``
and read its status. Every answer is checked to belong to its caller: own work ids and names, lists
holding only the user's works, status reads of the caller's own job answering 200.

Reports requests, errors by kind, p50/p95/p99 per operation, jobs submitted vs succeeded (waiting up
to ``--job-wait`` seconds at the end), and the stack process's RSS at start, after warm-up (a
quarter of the run) and at the end.

    .venv/bin/python -m bench.load_bench --clients 10 --clients 50 [--seconds 60] [--out bench/results/load.md]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ADMIN = ("admin", "bench-admin-password")
FINAL = ("Succeed", "Failed", "Cancelled", "Timeout")
BASE = "/api/rest_j/v1"


def start_stack(state: Path) -> tuple[subprocess.Popen[str], int]:
    """``python -m chalicelib.local.stack`` on free loopback ports; answers (process, HTTP port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    env.update(
        {
            "SPARKGATE_ADMIN_USER": ADMIN[0],
            "SPARKGATE_ADMIN_PASSWORD": ADMIN[1],
            "SPARKGATE_SPARK_MASTER": "local[1]",
            "SPARKGATE_MAX_ACTIVE_JOBS_PER_USER": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    state.mkdir(parents=True, exist_ok=True)
    log = state.parent / "stack.log"
    cmd = [sys.executable, "-m", "chalicelib.local.stack", "--http-port", "0", "--ws-port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--state-dir", str(state)], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        text = log.read_text()
        found = re.search(r"HTTP on http://127\.0\.0\.1:(\d+)", text)
        if "sparkgate: ready" in text and found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(log.read_text())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Client:
    """One keep-alive HTTP connection to the stack."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if self.token:
            hdrs["Authorization"] = f"Token {self.token}"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()
        self.requests = 0
        self.jobs: list[tuple[str, str]] = []  # (user token, exec id)

    def record(self, op: str, seconds: float) -> None:
        with self.lock:
            self.latencies[op].append(seconds * 1000)
            self.requests += 1

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] += 1


def run_client(
    port: int, user: str, token: str, other_work: str, index: int, args: argparse.Namespace, stats: Stats, end: float
) -> None:
    client = Client(port, token)
    mine: dict[str, str] = {}
    for n in range(args.requests):
        if time.monotonic() >= end:
            return

        def timed(op: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
            started = time.perf_counter()
            try:
                status, answer = client.call(method, path, body, headers)
            except Exception as err:
                stats.error(f"{op}: {type(err).__name__}")
                return None, None
            stats.record(op, time.perf_counter() - started)
            return status, answer

        name = f"{user}-c{index}-{n}"
        status, answer = timed(
            "create work",
            "POST",
            "/api/v1/works",
            {"name": name, "description": "load", "type": "BATCH", "category": "SPARK_SQL"},
        )
        if status != 201:
            stats.error(f"create work: {status}")
            continue
        work = answer["data"]
        if work.get("name") != name:
            stats.error("create work: another caller's answer")
            continue
        mine[work["work_id"]] = name
        status, answer = timed("get work", "GET", f"/api/v1/works/{work['work_id']}")
        if status != 200:
            stats.error(f"get work: {status}")
        elif (answer["data"]["work_id"], answer["data"]["name"]) != (work["work_id"], name):
            stats.error("get work: another caller's answer")
        status, answer = timed("list works", "GET", "/api/v1/works")
        if status != 200:
            stats.error(f"list works: {status}")
        else:
            items = answer["data"] if isinstance(answer["data"], list) else answer["data"].get("items", [])
            if any(not str(w.get("name", "")).startswith(f"{user}-") for w in items):
                stats.error("list works: another user's work")
        status, answer = timed(
            "patch work",
            "PATCH",
            f"/api/v1/works/{work['work_id']}",
            {"description": f"patched {n}"},
            {"If-Match": f'"{work["version"]}"'},
        )
        if status != 200:
            stats.error(f"patch work: {status}")
        elif answer["data"]["name"] != name:
            stats.error("patch work: another caller's answer")
        status, answer = timed("get other's work", "GET", f"/api/v1/works/{other_work}")
        if status != 404:
            stats.error(f"get other's work: {status} (must be 404)")
        if args.job_every and n % args.job_every == 0:
            body = {"executionCode": "select 1", "runType": "sql", "executeApplicationName": "spark", "params": {}}
            status, answer = timed("entrance execute", "POST", f"{BASE}/entrance/execute", body)
            if status != 200 or answer.get("status") != 0:
                stats.error(f"entrance execute: {status}")
                continue
            exec_id = answer["data"]["execID"]
            with stats.lock:
                stats.jobs.append((token, exec_id))
            status, answer = timed("job status", "GET", f"{BASE}/entrance/{exec_id}/status")
            if status != 200 or answer.get("status") != 0:
                stats.error(f"job status: {status}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def one_run(clients: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sparkgate-load-") as tmp:
        proc, port = start_stack(Path(tmp) / "state")
        try:
            admin = Client(port)
            status, answer = admin.call("POST", "/token", {"username": ADMIN[0], "password": ADMIN[1]})
            assert status == 200, answer
            admin.token = answer["data"]["token"]
            tokens: list[tuple[str, str, str]] = []
            for u in range(args.users):
                user, password = f"load{u}", f"load{u}-password"
                status, answer = admin.call("POST", "/api/v1/users", {"username": user, "password": password})
                assert status == 201, answer
                status, answer = Client(port).call("POST", "/token", {"username": user, "password": password})
                assert status == 200, answer
                token = answer["data"]["token"]
                seed = Client(port, token).call(
                    "POST",
                    "/api/v1/works",
                    {"name": f"{user}-seed", "description": "seed", "type": "BATCH", "category": "SPARK_SQL"},
                )
                assert seed[0] == 201, seed
                tokens.append((user, token, seed[1]["data"]["work_id"]))
            stats = Stats()
            rss_start = rss_mb(proc.pid)
            load_start = os.getloadavg()
            started = time.monotonic()
            end = started + args.seconds
            threads = []
            for i in range(clients):
                user, token, _ = tokens[i % len(tokens)]
                other = tokens[(i + 1) % len(tokens)][2]
                thread = threading.Thread(
                    target=run_client, args=(port, user, token, other, i, args, stats, end), daemon=True
                )
                threads.append(thread)
                thread.start()
            time.sleep(args.seconds / 4)
            rss_warm = rss_mb(proc.pid)
            for thread in threads:
                thread.join(args.seconds + 300)
            elapsed = time.monotonic() - started
            rss_end = rss_mb(proc.pid)
            load_end = os.getloadavg()
            succeeded = 0
            final: collections.Counter[str] = collections.Counter()
            deadline = time.monotonic() + args.job_wait
            for token, exec_id in stats.jobs:
                checker = Client(port, token)
                while True:
                    status, answer = checker.call("GET", f"{BASE}/entrance/{exec_id}/status")
                    job_status = answer["data"]["status"] if status == 200 else f"HTTP {status}"
                    if job_status in FINAL or status != 200 or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                final[job_status] += 1
                succeeded += job_status == "Succeed"
            rss_after_jobs = rss_mb(proc.pid)
            return {
                "clients": clients,
                "users": args.users,
                "seconds": elapsed,
                "requests": stats.requests,
                "errors": dict(stats.errors),
                "ops": {
                    op: (len(v), percentile(v, 50), percentile(v, 95), percentile(v, 99))
                    for op, v in sorted(stats.latencies.items())
                },
                "jobs": (len(stats.jobs), succeeded, dict(final)),
                "rss": (rss_start, rss_warm, rss_end, rss_after_jobs),
                "load": (load_start, load_end),
            }
        finally:
            proc.send_signal(2)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def render(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    lines = [
        "# Load (local stack, many users at once)",
        "",
        "Several users in parallel against the real local stack on loopback (started as `make run` starts it,",
        "free ports, fresh state): works create / get / list / patch (`If-Match`) / get another user's work",
        "(must be 404), and entrance `select 1` jobs with a status read. Every answer is checked to be the",
        "caller's (own work ids and names, lists holding only the user's works, own job status 200).",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.node()} · {platform.platform()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()}",
        f"- commit: {commit.stdout.strip()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- users: {args.users}; clients spread round-robin over them; "
        f"one job every {args.job_every} iterations per client",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['clients']} clients, {r['seconds']:.0f} s",
            "",
            f"- load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in r['load'][0])}, "
            f"at end {'/'.join(f'{x:.1f}' for x in r['load'][1])}",
            f"- requests: {r['requests']} ({r['requests'] / r['seconds']:.1f}/s)",
            f"- errors: {sum(r['errors'].values())}"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) + ")" if r["errors"] else ""),
            f"- jobs submitted {r['jobs'][0]}, succeeded {r['jobs'][1]} ({r['jobs'][2]})",
            f"- stack RSS MB: start {r['rss'][0]:.0f}, after warm-up {r['rss'][1]:.0f}, end of load {r['rss'][2]:.0f}, "
            f"after the jobs drained {r['rss'][3]:.0f} (end / warm-up: {r['rss'][2] / max(r['rss'][1], 1):.2f})",
            "",
            "| operation | n | p50 ms | p95 ms | p99 ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for op, (n, p50, p95, p99) in r["ops"].items():
            lines.append(f"| {op} | {n} | {p50:.0f} | {p95:.0f} | {p99:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, action="append", help="client threads (repeat for several runs)")
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--requests", type=int, default=10_000, help="iterations per client at most")
    parser.add_argument("--job-every", type=int, default=10)
    parser.add_argument("--job-wait", type=float, default=300.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    clients = args.clients or [10]
    results = []
    for count in clients:
        result = one_run(count, args)
        print(json.dumps(result), flush=True)
        results.append(result)
    text = render(results, args, "python -m bench.load_bench " + " ".join(argv or sys.argv[1:]))
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
