"""Push latency on the local stack: a Job status written to the table -> the frame received on a WebSocket.

Starts the local stack as a subprocess (free ports, temporary state), connects one WebSocket client
as a fresh user, then for each event writes a status change straight into the table (a Job insert:
``Scheduled``, then a transition to ``Running``) and times from just before the write until the
client receives the matching status push. Events are sequential. No Spark is involved.

    .venv/bin/python -m bench.push_bench [--events 100] [--out bench/results/push.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ADMIN_PASSWORD = "bench-admin-password"


def _post(url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Token {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def start_stack(state: Path) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``python -m chalicelib.local.stack`` on free ports; answers (process, http url, ws url)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update({"SPARKGATE_ADMIN_PASSWORD": ADMIN_PASSWORD, "SPARKGATE_AWS_PORT": "0", "PYTHONUNBUFFERED": "1"})
    log = state / "stack.log"
    cmd = [sys.executable, "-m", "chalicelib.local.stack", "--http-port", "0", "--ws-port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--state-dir", str(state)], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        text = log.read_text()
        if "ready" in text:
            http = re.search(r"HTTP on (http://\S+)", text)
            ws = re.search(r"WebSocket on (ws://[\d.:]+)", text)
            if http and ws:
                return proc, http.group(1), ws.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(log.read_text())


async def measure(ws_url: str, token: str, owner: str, username: str, events: int) -> list[float]:
    """Latencies in milliseconds, one per status event."""
    from websockets.asyncio.client import connect

    from chalicelib import jobs
    from chalicelib.store import jobs as job_store
    from chalicelib.tokens import Principal

    principal = Principal(owner, username)
    latencies: list[float] = []
    async with connect(f"{ws_url}/?token={token}") as sock:
        await asyncio.sleep(0.5)

        async def expect(exec_id: str, status: str, started: float) -> None:
            while True:
                frame = json.loads(await asyncio.wait_for(sock.recv(), 10))
                data = frame.get("data") or {}
                if data.get("execID") == exec_id and data.get("status") == status:
                    latencies.append((time.perf_counter() - started) * 1000)
                    return

        for _ in range(events // 2 + events % 2):
            started = time.perf_counter()
            job = await asyncio.to_thread(
                jobs.new_job, jobs.JobRequest(owner=principal, code="select 1", run_type="sql", kind="bench")
            )
            await expect(job["exec_id"], "Scheduled", started)
            if len(latencies) >= events:
                break
            started = time.perf_counter()
            await asyncio.to_thread(job_store.transition, job["exec_id"], ("Scheduled",), "Running")
            await expect(job["exec_id"], "Running", started)
            await asyncio.sleep(0.02)
    return latencies[:events]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "push.md"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sparkgate-bench-") as tmp:
        state = Path(tmp)
        proc, http, ws_url = start_stack(state)
        try:
            from chalicelib.local.credentials import local_stack_environment

            os.environ.update(local_stack_environment(state))  # the stack's endpoint and platform credential
            os.environ.update({"SPARKGATE_STAGE": "local", "SPARKGATE_STATE_DIR": str(state)})
            admin = _post(f"{http}/token", {"username": "admin", "password": ADMIN_PASSWORD})["data"]["token"]
            _post(f"{http}/api/v1/users", {"username": "bench", "password": "bench-password"}, admin)
            token = _post(f"{http}/token", {"username": "bench", "password": "bench-password"})["data"]["token"]
            from chalicelib.tokens import verify_token

            principal = verify_token(token)
            latencies = asyncio.run(measure(ws_url, token, principal.user_id, principal.username, args.events))
        finally:
            proc.terminate()
            proc.wait(30)
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    poll = os.environ.get("SPARKGATE_STREAM_POLL_MS", "20")
    machine = f"{platform.node()} · {platform.platform()} · {os.cpu_count()} cores · Python {platform.python_version()}"
    lines = [
        "# Push latency (local stack)",
        "",
        "Job status written to the table (Job insert -> `Scheduled`, transition -> `Running`) until the",
        "status push is received by a WebSocket client: write -> moto stream -> stream pump -> `on_dynamodb_record`",
        "-> `@connections` POST -> local gateway -> socket. Events are sequential; no Spark involved.",
        "",
        f"- command: `.venv/bin/python -m bench.push_bench --events {args.events}`",
        f"- machine: {machine} (cores shared with other Spark jobs)",
        f"- stream pump poll interval: {poll} ms (`SPARKGATE_STREAM_POLL_MS`)",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| events | p50 ms | p95 ms | min ms | max ms | mean ms |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {len(latencies)} | {p50:.1f} | {p95:.1f} | {min(latencies):.1f} | {max(latencies):.1f} "
        f"| {statistics.fmean(latencies):.1f} |",
        "",
        f"Target p50 < 100 ms: {'met' if p50 < 100 else 'NOT met'}.",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
