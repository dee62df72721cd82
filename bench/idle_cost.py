"""What an idle session driver costs: its DynamoDB requests per hour, before and after (issue 19, target 3).

A real :class:`~chalicelib.engine.supervisor.SessionDriver` (its loop, heartbeat thread and store calls) runs
against moto in this process with a stand-in kernel (no Spark: an idle driver never talks to its kernel),
and every DynamoDB call it makes is counted by operation. The first ``--settle`` seconds (the busy
window) are skipped; the rest is the idle rate. ``--compare REV`` runs the same measurement on the tree of
``REV`` (a ``git worktree``) in the same run, and the result is written to ``bench/results/idle.md``.

    .venv/bin/python -m bench.idle_cost --seconds 150 --settle 45 --compare f5e097c
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: On-demand prices, us-east-1 (USD per million request units, since November 2024).
PRICE_RRU, PRICE_WRU = 0.125, 0.625
#: Request units per call for this driver's items (all under 1 KB): consistent reads 1, eventually
#: consistent reads (GSI queries) 0.5, writes 1.
UNITS = {"Query": ("r", 0.5), "GetItem": ("r", 1.0), "UpdateItem": ("w", 1.0), "PutItem": ("w", 1.0)}


class _IdleKernel:
    """Stands in for a kernel: alive, empty, never asked to run anything by an idle driver."""

    host, pid, killed_for, proc = "bench", 0, None, None

    def alive(self) -> bool:
        return True

    def memory_bytes(self) -> int:
        return 0

    def stop(self) -> None:
        pass

    def kill(self, reason: str) -> None:
        pass


def measure(seconds: float, settle: float) -> dict[str, Any]:
    """Run one idle driver for ``seconds``; DynamoDB calls per hour after the first ``settle`` seconds."""
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    os.environ["SPARKGATE_STATE_DIR"] = tempfile.mkdtemp(prefix="sg-idle-")
    from moto import mock_aws

    with mock_aws():
        from chalicelib.config import settings
        from chalicelib.engine import supervisor
        from chalicelib.records import SessionRecord
        from chalicelib.store import aws
        from chalicelib.store import sessions as session_store
        from chalicelib.store.provision import ensure_table_and_bucket

        aws.reset()
        ensure_table_and_bucket(settings())
        record: SessionRecord = {
            "session_id": "idle",
            "owner": "u",
            "kind": "session",
            "generation": 1,
            "state": "starting",
            "config": {},
        }
        session_store.put_session(record, expected_generation=None, live=True)
        supervisor.start_kernel = lambda *a, **k: _IdleKernel()  # type: ignore[assignment,return-value]
        counts: collections.Counter[str] = collections.Counter()
        counting = threading.Event()

        def count(model: Any, **_: Any) -> None:
            if counting.is_set():
                counts[model.name] += 1

        aws.table().meta.client.meta.events.register("before-call.dynamodb", count)
        driver = supervisor.SessionDriver("idle", 1)
        threading.Thread(target=driver.serve, daemon=True).start()
        time.sleep(settle)
        counting.set()
        time.sleep(seconds - settle)
        counting.clear()
        driver.stop.set()
    hours = (seconds - settle) / 3600
    per_hour = {op: round(n / hours) for op, n in sorted(counts.items())}
    units = {"r": 0.0, "w": 0.0}
    for op, n in per_hour.items():
        kind, each = UNITS.get(op, ("r", 1.0))
        units[kind] += n * each
    cost = units["r"] * PRICE_RRU / 1e6 + units["w"] * PRICE_WRU / 1e6
    return {"per_hour": per_hour, "rru_per_hour": units["r"], "wru_per_hour": units["w"], "usd_per_hour": cost}


def _in_tree(tree: Path, seconds: float, settle: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = f"import json, bench.idle_cost as b; print(json.dumps(b.measure({seconds}, {settle})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    from bench.entrance_bench import machine, tree_label

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--settle", type=float, default=45)
    parser.add_argument("--compare", default=None, help="a git revision to measure side by side")
    args = parser.parse_args()
    commit = tree_label(ROOT)
    runs: dict[str, dict[str, Any]] = {}
    threads = []
    if args.compare:
        before = Path(tempfile.mkdtemp(prefix="sg-idle-before-")) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.compare], cwd=ROOT, check=True)
        (before / "bench").mkdir(exist_ok=True)
        (before / "bench" / "idle_cost.py").write_text(Path(__file__).read_text())
        threads.append(
            threading.Thread(target=lambda: runs.__setitem__("before", _in_tree(before, args.seconds, args.settle)))
        )
    threads.append(
        threading.Thread(target=lambda: runs.__setitem__("after", _in_tree(ROOT, args.seconds, args.settle)))
    )
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if args.compare:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)
    load = os.getloadavg()
    lines = [
        "# Idle session driver: DynamoDB requests and cost per hour",
        "",
        f"- command: `.venv/bin/python -m bench.idle_cost --seconds {args.seconds:g} --settle {args.settle:g}"
        + (f" --compare {args.compare}`" if args.compare else "`"),
        f"- commit: {commit}; machine: {machine()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"- prices: ${PRICE_RRU} per million read units, ${PRICE_WRU} per million write units (on-demand, us-east-1)",
        "",
        "| tree | requests per hour | read units/h | write units/h | USD per idle driver-hour |",
        "|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        calls = ", ".join(f"{op} {n}" for op, n in run["per_hour"].items())
        lines.append(
            f"| {name} | {calls} | {run['rru_per_hour']:.0f} | {run['wru_per_hour']:.0f} | {run['usd_per_hour']:.7f} |"
        )
    if "before" in runs and runs["after"]["usd_per_hour"]:
        lines += ["", f"Ratio (before / after): {runs['before']['usd_per_hour'] / runs['after']['usd_per_hour']:.1f}x"]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results" / "idle.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
