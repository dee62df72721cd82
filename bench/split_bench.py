"""What the supervisor/kernel split costs: the same HTTP calls against two local stacks, one run.

The reference is a checkout of the engine before the split (``--before``, a git worktree, e.g.
``git worktree add /tmp/sg-before e5ed48e``); the subject is this tree. Each round starts the stack
of one tree (``python -m chalicelib.local.stack``, the same venv), warms it, then measures over
loopback, as a client would:

- the warm Linkis round trip of ``select 1`` (execute, status polls, jobhistory, file tree, openFile);
- a 10M-point ``/pointmap`` and ``/heatmap`` (1024x896 PNG) of a Parquet table loaded with ``/loadfile``.

Rounds alternate before/after (ABAB...) so both see the same machine; the report gives the median
of each tree's rounds and the ratio after/before. Usage::

    .venv/bin/python bench/split_bench.py --before /tmp/sg-before [--rounds 2] [--runs 30] [--maps 5]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.entrance_bench import HttpClient, http_round_trip, machine  # noqa: E402
from bench.geo_bench import BOX, H, W, write_points  # noqa: E402
from tests.e2e.stack import StackProcess  # noqa: E402


def start_stack(tree: Path, data_root: Path) -> StackProcess:
    """The local stack of ``tree``, started and ready."""
    extra = {"SPARKGATE_DATA_ROOTS": str(data_root), "SPARKGATE_SYNC_WAIT_SECONDS": "120"}
    stack = StackProcess(Path(tempfile.mkdtemp(prefix="sg-split-state-")), extra, tree=tree)
    stack.start(timeout=120)
    return stack


def _geo(stack: StackProcess, token: str, path: str, body: Any) -> Any:
    """One geo call; a 202 (the driver's cold start outlasted the sync wait) is repeated until it settles."""
    status, answer, _ = stack.call("POST", path, body, token)
    while status == 202:
        time.sleep(2)
        status, answer, _ = stack.call("POST", path, body, token)
    assert status == 200 and answer["status"] == "success", (path, status, answer)
    return answer


def measure(tree: Path, parquet: Path, runs: int, maps: int) -> dict[str, float]:
    """One round on ``tree``: medians in seconds of the warm round trip and of each map."""
    stack = start_stack(tree, parquet.parent)
    try:
        token = stack.login()
        client = HttpClient(stack.http_port, token)
        for _ in range(5):  # the session's cold start, then warm-up
            http_round_trip(client)
        trips = [http_round_trip(client) for _ in range(runs)]
        _geo(stack, token, "/scope", {"scope": "bench"})
        _geo(stack, token, "/session", {"scope": "bench", "session": "s", "master-addr": "local[2]"})
        table = {"name": "pts", "format": "parquet", "path": str(parquet)}
        _geo(stack, token, "/loadfile", {"scope": "bench", "session": "s", "tables": [table]})
        params: dict[str, Any] = {"width": W, "height": H, "bounding_box": BOX, "coordinate_system": "EPSG:4326"}
        shapes: dict[str, tuple[str, dict[str, Any]]] = {
            "pointmap": ("select ST_Point(x, y) as p from pts", {"point_color": "#2DEF4A", "point_size": 3}),
            "heatmap": ("select ST_Point(x, y) as p, w from pts", {"map_zoom_level": 10}),
        }
        out = {"round trip": statistics.median(trips)}
        for route, (sql, extra) in shapes.items():
            body = {"scope": "bench", "session": "s", "sql": sql, "params": {**params, **extra}}
            _geo(stack, token, f"/{route}", body)  # warm-up (Python workers, caches)
            took = []
            for _ in range(maps):
                started = time.perf_counter()
                answer = _geo(stack, token, f"/{route}", body)
                took.append(time.perf_counter() - started)
                assert base64.b64decode(answer["result"])[:8] == b"\x89PNG\r\n\x1a\n"
            out[route] = statistics.median(took)
        return out
    finally:
        stack.stop()


def _commit(tree: Path) -> str:
    got = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return got.stdout.strip()


def main() -> int:
    """Run the rounds and write the markdown report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True, help="a worktree of the engine before the split")
    parser.add_argument("--after", type=Path, default=ROOT, help="the tree after the split (default: this one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--maps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/split.md")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="sg-split-data-"))
    data.chmod(0o755)  # the kernels' own uids read it
    parquet = data / "points.parquet"
    write_points(parquet, args.rows)
    parquet.chmod(0o644)
    before_commit, after_commit = (_commit(tree) for tree in (args.before, args.after))
    loads = [Path("/proc/loadavg").read_text().split()[0]]
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for name, tree in (("before", args.before), ("after", args.after)):
            results[name].append(measure(tree.resolve(), parquet, args.runs, args.maps))
            loads.append(Path("/proc/loadavg").read_text().split()[0])
            print(name, results[name][-1], flush=True)
    rows = []
    for key in results["before"][0]:
        b = statistics.median(r[key] for r in results["before"])
        a = statistics.median(r[key] for r in results["after"])
        unit, scale = ("ms", 1000) if key == "round trip" else ("s", 1)
        digits = 0 if unit == "ms" else 2
        rows.append(f"| {key} | {b * scale:.{digits}f} {unit} | {a * scale:.{digits}f} {unit} | {a / b:.2f}x |")
    flags = f"--before <worktree of {before_commit}> --after <worktree of {after_commit}>"
    flags += f" --rounds {args.rounds} --runs {args.runs} --maps {args.maps}"
    report = f"""# The supervisor/kernel split: before and after

Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}. Machine: {machine()}.
Command: `.venv/bin/python bench/split_bench.py {flags}`
Commits: before `{before_commit}` (one driver process per session, user code in it), after `{after_commit}`
(trusted supervisor + sandboxed kernel under the user's uid, in its own PID/mount/network namespaces).
1-minute load average before/after each round: {" -> ".join(loads)}.

Both trees run as `python -m chalicelib.local.stack` from the same venv, measured over loopback HTTP, rounds
alternating before/after; each figure is the median over rounds of the per-round median.
"round trip": warm `select 1` (execute, status polls, jobhistory, getDirFileTrees, openFile; {args.runs} per round).
Maps: {args.rows:,} points of a Parquet table loaded with `/loadfile`, {W}x{H} PNG, {args.maps} warm calls per round.

| measure | before | after | after / before |
|---|---|---|---|
{chr(10).join(rows)}

Per round: before {results["before"]}, after {results["after"]}.
"""
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
