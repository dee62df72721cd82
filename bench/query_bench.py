"""A session queue poll on the embedded AWS as its table grows: the query index against moto's own walk.

The driver's ``queued_jobs`` (a GSI ``Query``, limit 5) and a log read (a table ``Query`` on one
partition) are timed on the embedded AWS in this process, on tables of ``--sizes`` Jobs (each with its
task pointer), first through :mod:`chalicelib.local.query_index`, then with it switched off (moto walks
and sorts every item), alternating, in the same run. The result goes to ``bench/results/query.md``.

    .venv/bin/python -m bench.query_bench --sizes 200 1000 5000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.entrance_bench import load_average, machine

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    """Fill the table step by step and time both paths at each size; write the report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "bench/results/query.md"))
    args = parser.parse_args()
    load_at_start = load_average()
    os.environ.update({"SPARKGATE_STAGE": "local", "SPARKGATE_RUNNER": "local"})
    os.environ["SPARKGATE_STATE_DIR"] = tempfile.mkdtemp(prefix="sparkgate-bench-")
    from chalicelib.local.aws import start_embedded_aws

    server, _ = start_embedded_aws()
    from chalicelib import jobs
    from chalicelib.config import settings
    from chalicelib.local import query_index
    from chalicelib.store import jobs as job_store
    from chalicelib.store import logs as log_store
    from chalicelib.store.provision import ensure_table_and_bucket
    from chalicelib.tokens import Principal

    ensure_table_and_bucket(settings())
    owner = Principal("bench", "bench")
    indexed = query_index._candidates
    rows = []
    stored = 0
    last = ""
    try:
        for size in sorted(args.sizes):
            while stored < size:  # every tenth Job waits in the polled session's queue
                session = "s-polled" if stored % 10 == 0 else f"s-{uuid.uuid4().hex[:6]}"
                request = jobs.JobRequest(owner=owner, code="select 1", run_type="sql", session_id=session, quota=False)
                last = jobs.new_job(request)["exec_id"]
                stored += 1
            log_store.append_log(last, 0, [("INFO", "line")])
            exec_id = last
            polls: dict[str, Callable[[], object]] = {
                "queue poll (GSI Query)": lambda: job_store.queued_jobs("s-polled", limit=5),
                "log read (table Query)": lambda: log_store.read_log(exec_id),  # noqa: B023 - timed right here
            }
            for name, poll in polls.items():
                figures: dict[str, list[float]] = {"index": [], "walk": []}
                for _ in range(3):  # alternate, so drift hits both
                    query_index._candidates = indexed
                    figures["index"].append(_median_ms(poll, args.runs))
                    query_index._candidates = lambda table, bound: None
                    figures["walk"].append(_median_ms(poll, args.runs))
                query_index._candidates = indexed
                with_index, walked = statistics.median(figures["index"]), statistics.median(figures["walk"])
                rows.append(f"| {size} | {name} | {with_index:.2f} ms | {walked:.2f} ms | {with_index / walked:.2f}x |")
    finally:
        query_index._candidates = indexed
        server.stop()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    report = (
        f"""# Query bench (embedded AWS)

Machine: {machine()}; load average at the start {load_at_start}, at the end {load_average()}.
Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}; commit {commit.stdout.strip()}.
Command: `.venv/bin/python -m bench.query_bench --sizes {" ".join(map(str, args.sizes))} --runs {args.runs}`

In process (the stack's own path to its embedded AWS), median of three alternating rounds of {args.runs}
calls; "walk" is moto's own query (the index switched off) on the same table in the same run. Items:
each Job is two items (the Job and its task pointer).

| Jobs in the table | call | with the index | moto's walk | ratio |
|---|---|---|---|---|
"""
        + "\n".join(rows)
        + "\n"
    )
    Path(args.out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
