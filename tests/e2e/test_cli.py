"""The `sparkgate` command line (python -m chalicelib.cli) against the real local stack."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.stack import StackProcess

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    process = StackProcess(tmp_path_factory.mktemp("cli") / "state")
    process.start()
    try:
        process.new_user("clara", "clara-password")
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def config_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg")


def cli(config_home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home), "SPARKGATE_PASSWORD": "clara-password"}
    return subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_login_keeps_the_token_0600_and_works_commands(stack: StackProcess, config_home: Path) -> None:
    done = cli(config_home, "login", "--url", stack.url, "--username", "clara")
    assert done.returncode == 0, done.stderr
    config = config_home / "sparkgate" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert json.loads(config.read_text())["username"] == "clara"
    created = cli(config_home, "works", "create", "--name", "cli-work", "--description", "from the CLI", "--paused")
    assert created.returncode == 0, created.stderr
    work = json.loads(created.stdout)
    assert work["name"] == "cli-work" and work["paused"] is True
    listed = cli(config_home, "works", "list", "--json")
    assert [w["work_id"] for w in json.loads(listed.stdout)] == [work["work_id"]]
    assert "cli-work" in cli(config_home, "works", "list").stdout
    updated = cli(config_home, "works", "update", work["work_id"], '{"description": "changed"}')
    assert json.loads(updated.stdout)["description"] == "changed"
    assert json.loads(cli(config_home, "tasks", "list", work["work_id"], "--json").stdout) == []
    me = json.loads(cli(config_home, "users", "get", "clara").stdout)
    assert me["username"] == "clara"
    refused = cli(config_home, "users", "list")
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr
    again = cli(config_home, "works", "create", "--name", "cli-work")
    assert again.returncode == 1 and "HTTP 409" in again.stderr


def test_run_prints_results_and_a_failing_job_exits_1(stack: StackProcess, config_home: Path, tmp_path: Path) -> None:
    cli(config_home, "login", "--url", stack.url, "--ws-url", stack.ws_url, "--username", "clara")
    done = cli(config_home, "run", "-e", "select 1 as answer, 'x' as letter")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WebSocket unavailable" not in done.stderr  # followed over the WebSocket
    assert "answer" in done.stdout and "letter" in done.stdout and "1" in done.stdout
    assert "Succeed" in done.stderr
    exec_id = done.stderr.split("submitted ", 1)[1].split()[0]
    out = tmp_path / "out.csv"
    assert cli(config_home, "jobs", "result", exec_id, "-o", str(out)).returncode == 0
    assert out.read_text().splitlines() == ["answer,letter", "1,x"]
    status = json.loads(cli(config_home, "jobs", "status", exec_id, "--json").stdout)
    assert status["status"] == "Succeed"
    listed = json.loads(cli(config_home, "jobs", "list", "--json").stdout)
    assert exec_id in [row["execId"] for row in listed]
    # no WebSocket where the config points: the log and status are followed over HTTP
    cli(config_home, "login", "--url", stack.url, "--ws-url", "ws://127.0.0.1:9", "--username", "clara")
    failed = cli(config_home, "run", "-e", "select * from no_such_table_anywhere")
    assert "following over HTTP" in failed.stderr
    assert failed.returncode == 1
    assert "Failed" in failed.stderr


def test_ctrl_c_kills_the_job(stack: StackProcess, config_home: Path) -> None:
    cli(config_home, "login", "--url", stack.url, "--ws-url", stack.ws_url, "--username", "clara")
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli", "run", "--type", "python", "-e", "import time\ntime.sleep(120)"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    token = stack.login("clara", "clara-password")
    exec_id = None
    while time.monotonic() < deadline and exec_id is None:
        time.sleep(1)
        _, body, _ = stack.call("GET", "/api/rest_j/v1/jobhistory/list", token=token)
        tasks = (body or {}).get("data", {}).get("tasks") or []
        running = [
            t
            for t in tasks
            if t.get("status") in ("Scheduled", "Running") and "sleep" in (t.get("executionCode") or "")
        ]
        if running:
            exec_id = running[0]["execId"]
    assert exec_id, "the job never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert f"killed {exec_id}" in err
    final = None
    while time.monotonic() < deadline:
        _, body, _ = stack.call("GET", f"/api/rest_j/v1/entrance/{exec_id}/status", token=token)
        final = body["data"]["status"]
        if final in ("Cancelled", "Failed", "Succeed", "Timeout"):
            break
        time.sleep(1)
    assert final == "Cancelled"


def test_geo_map_to_png(stack: StackProcess, config_home: Path, tmp_path: Path) -> None:
    cli(config_home, "login", "--url", stack.url, "--ws-url", stack.ws_url, "--username", "clara")
    assert cli(config_home, "geo", "scope", '{"scope": "cli"}').returncode == 0
    table = {
        "name": "taxi",
        "format": "csv",
        "path": "nyc_taxi/0_10000_nyc_taxi_and_building.csv",
        "options": {"header": "True", "inferSchema": "True"},
    }
    loaded = cli(config_home, "geo", "load", json.dumps({"scope": "cli", "tables": [table]}))
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    body = {
        "scope": "cli",
        "sql": "select ST_Point(pickup_longitude, pickup_latitude) from taxi",
        "params": {
            "width": 256,
            "height": 224,
            "bounding_box": [-73.998427, 40.730309, -73.954348, 40.780816],
            "coordinate_system": "EPSG:4326",
            "point_size": 3,
            "point_color": "#2DEF4A",
            "opacity": 0.5,
        },
    }
    out = tmp_path / "map.png"
    drawn = cli(config_home, "geo", "map", "--kind", "pointmap", "-o", str(out), json.dumps(body))
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
