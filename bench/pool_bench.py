"""The first call with and without the warm pool (issue 18, part 3), next to a bare SparkSession.

For each try, against the real local stack over loopback, as a client would:

- **new user**: an admin creates a user, the user logs in and submits ``select 1`` over the entrance;
  the time from the submit to ``Succeed`` (status polled every 20 ms);
- **new scope**: the same user creates a scope and asks ``/query select 1`` in it (synchronous);
  the time of that one call.

With the pool on (``SPARKGATE_POOL_SIZE=1``, ``SPARKGATE_POOL_PER_USER=1``) each try first waits until
the pool is refilled (a fresh entry, then the user's spare), as a user arriving a little later would
find it; with it off (``SPARKGATE_POOL_MAX=0``) every first call starts a driver. The reference, in the
same run: ``SparkSession.builder.master(local[*]).getOrCreate()`` + ``select 1`` in a fresh process. The
report (median = p50 over the tries, with the load average) goes to ``bench/results/pool.md``::

    .venv/bin/python -m bench.pool_bench [--tries 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.entrance_bench import machine, tree_label  # noqa: E402
from tests.e2e.stack import StackProcess  # noqa: E402

BASE = "/api/rest_j/v1"
BARE = (
    "import time; t = time.perf_counter(); from pyspark.sql import SparkSession; "
    "s = SparkSession.builder.master('local[*]').config('spark.ui.enabled', 'false').getOrCreate(); "
    "s.sql('select 1').collect(); print(time.perf_counter() - t)"
)


def bare_session() -> float:
    """Seconds for a bare SparkSession and ``select 1`` in a new process (imports included)."""
    out = subprocess.run([sys.executable, "-c", BARE], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _wait_pool(stack: StackProcess, kind: str, owner: str | None) -> None:
    from chalicelib.store import pool as pool_store

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with stack.aws():
            entries = pool_store.listed()
        if any(e["kind"] == kind and e.get("owner") == owner and e["state"] == "ready" for e in entries):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no {kind} pool entry became ready")


def _user_id(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def first_job(stack: StackProcess, token: str) -> float:
    """Seconds from submitting ``select 1`` to seeing it Succeed."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"executionCode": "select 1", "runType": "sql", "executeApplicationName": "spark", "params": {}}
    started = time.perf_counter()
    status, got, _ = stack.call("POST", f"{BASE}/entrance/execute", body, headers=headers)
    assert status == 200, got
    exec_id = got["data"]["execID"]
    while True:
        state = stack.call("GET", f"{BASE}/entrance/{exec_id}/status", None, headers=headers)[1]["data"]["status"]
        if state in ("Succeed", "Failed", "Cancelled", "Timeout"):
            assert state == "Succeed", state
            return time.perf_counter() - started
        time.sleep(0.02)


def first_query(stack: StackProcess, token: str, scope: str) -> float:
    """Seconds for ``/query select 1`` in a new scope (a 202 is followed until the answer)."""
    assert stack.call("POST", "/scope", {"scope": scope}, token)[0] == 200
    started = time.perf_counter()
    status, answer, _ = stack.call("POST", "/query", {"scope": scope, "session": "spark", "sql": "select 1"}, token)
    while status == 202:
        time.sleep(0.1)
        status, answer, _ = stack.call("POST", "/query", {"scope": scope, "session": "spark", "sql": "select 1"}, token)
    assert status == 200 and answer["status"] == "success", answer
    return time.perf_counter() - started


def run(pool: bool, tries: int) -> dict[str, list[float]]:
    """``tries`` new users and new scopes against one stack with the pool on or off."""
    env = {"SPARKGATE_SYNC_WAIT_SECONDS": "300"}
    env.update(
        {"SPARKGATE_POOL_SIZE": "1", "SPARKGATE_POOL_PER_USER": "1", "SPARKGATE_POOL_MAX": "3"}
        if pool
        else {"SPARKGATE_POOL_MAX": "0"}
    )
    env["SPARKGATE_MAX_SESSIONS_PER_USER"] = "0"
    stack = StackProcess(Path(tempfile.mkdtemp(prefix="sg-pool-bench-")), env)
    stack.start(timeout=180)
    out: dict[str, list[float]] = {"user": [], "scope": []}
    try:
        for i in range(tries):
            if pool:
                _wait_pool(stack, "fresh", None)
            token = stack.new_user(f"bench{i}{'p' if pool else 'c'}")
            out["user"].append(first_job(stack, token))
            if pool:
                _wait_pool(stack, "spare", _user_id(token))
            out["scope"].append(first_query(stack, token, f"s{i}"))
            print(
                f"pool {'on' if pool else 'off'} try {i + 1}: "
                f"user {out['user'][-1]:.2f} s, scope {out['scope'][-1]:.2f} s"
            )
    finally:
        stack.stop(timeout=60)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=10)
    args = parser.parse_args()
    load_before = os.getloadavg()
    bare = [bare_session() for _ in range(3)]
    on = run(True, args.tries)
    off = run(False, args.tries)
    bare += [bare_session() for _ in range(2)]
    load_after = os.getloadavg()
    commit = tree_label(ROOT)

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    lines = [
        "# First call with and without the warm pool",
        "",
        f"- command: `.venv/bin/python -m bench.pool_bench --tries {args.tries}`",
        f"- commit: {commit}; machine: {machine()}",
        f"- load average at start {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"at end {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}",
        "",
        "| first call | pool on (p50) | pool off (p50) | off / on |",
        "|---|---|---|---|",
        f"| brand-new user: entrance `select 1` submit -> Succeed | {cell(on['user'])} | {cell(off['user'])} | "
        f"{statistics.median(off['user']) / statistics.median(on['user']):.1f}x |",
        f"| new scope: `/query select 1` | {cell(on['scope'])} | {cell(off['scope'])} | "
        f"{statistics.median(off['scope']) / statistics.median(on['scope']):.1f}x |",
        f"| reference: bare `SparkSession.getOrCreate()` + `select 1`, new process | {cell(bare)} | | |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results" / "pool.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
