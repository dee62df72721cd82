"""The README's "First ten minutes", run verbatim: every ``sh`` block of that section, in order, in one
bash (``-euo pipefail``) against a real local stack with the default data root and the local default
password, so the walk can never go stale. Only ``SG`` (the stack's URL: the test's stack listens on a
free port) and ``DATA`` (the repo's ``data/``: the walk runs in a scratch folder, where it writes
``map.png``) are set, through the defaults the first block itself offers.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.e2e.stack import StackProcess

CSV = ROOT / "data" / "nyc_taxi" / "0_10000_nyc_taxi_and_building.csv"
BASELINE = ROOT / "data" / "arctern_baselines" / "point_map_nyc_1.png"
DEFAULT_PASSWORD = "sparkgate-admin"


def walk_blocks(readme: str) -> list[str]:
    """The ``sh`` blocks of the README's "First ten minutes" section, in order."""
    start = readme.index("\n## First ten minutes\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else len(readme)]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)


def _by_vendor() -> dict[str, tuple[int, float]]:
    fares: dict[str, list[float]] = defaultdict(list)
    with CSV.open(newline="") as handle:
        for row in csv.DictReader(handle):
            fares[row["VendorID"]].append(float(row["fare_amount"]))
    return {v: (len(f), round(sum(f) / len(f), 2)) for v, f in fares.items()}


def _lit(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"))[..., 3] > 0


def test_the_block_extractor_finds_the_whole_walk() -> None:
    blocks = walk_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 5
    assert "/token" in blocks[0] and "entrance/execute" in blocks[0]
    assert "submit sql" in blocks[1] and "submit python" in blocks[2]
    assert (
        "/api/v1/files" in blocks[3]
        and "/api/v1/works" in blocks[3]
        and "geo pointmap" in blocks[4]
        and "map.png" in blocks[4]
    )


@pytest.mark.timeout(1200)
def test_the_readme_walk_runs_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = "\n".join(walk_blocks((ROOT / "README.md").read_text()))
    monkeypatch.delenv("SPARKGATE_DATA_ROOTS", raising=False)  # the default root, as in a fresh clone
    monkeypatch.delenv("SPARKGATE_WORK_ROOTS", raising=False)
    stack = StackProcess(tmp_path / "state", {"SPARKGATE_ADMIN_PASSWORD": DEFAULT_PASSWORD})
    stack.start(timeout=120)
    try:
        banner = "".join(stack.output)
        assert f"sparkgate: data roots: {ROOT / 'data'} (SPARKGATE_DATA_ROOTS)" in banner
        assert "sparkgate: isolation: " in banner and f"sparkgate: HTTP on {stack.url}" in banner
        assert f'"password":"{DEFAULT_PASSWORD}"' in banner  # the real default, not a placeholder
        here = tmp_path / "walk"
        here.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SPARKGATE_"))}
        env.update(SG=stack.url, DATA=str(ROOT / "data"))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=here,
            env=env,
            capture_output=True,
            text=True,
            timeout=1000,
        )
        out = done.stdout
        assert done.returncode == 0, f"the walk failed ({done.returncode}):\n{out}\n{done.stderr}"
    finally:
        stack.stop()

    # SQL: the log opens with the driver start; the result is trips and average fare per vendor
    assert "starting a Spark driver for your session; this usually takes 10-30 s" in out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith('[["')]
    assert rows, out
    assert {v: (int(n), float(avg)) for v, n, avg in rows[0]} == _by_vendor()
    # PySpark: what it printed is its log
    assert "9999 trips" in out
    # the work's run: listed with status 0 and no error, its Job Succeed
    tasks = [json.loads(line) for line in out.splitlines() if line.startswith('{"task_id"')]
    assert tasks and tasks[0]["status"] == 0 and tasks[0]["error"] is None, out
    assert out.count("Succeed") >= 3
    # the map: a real PNG whose lit pixels match the peer's render of the same request
    assert "True" in out.splitlines()[-1]
    lit, ref = _lit(here / "map.png"), _lit(BASELINE)
    assert lit.shape == ref.shape == (896, 1024)
    iou = (lit & ref).sum() / max(1, (lit | ref).sum())
    assert iou >= 0.9, iou
