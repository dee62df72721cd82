"""The real local stack over real sockets: login, works, restart with state kept, the operator CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.e2e.stack import StackProcess


def test_state_survives_restart(tmp_path: Path) -> None:
    stack = StackProcess(tmp_path / "state")
    stack.start()
    try:
        token = stack.login()
        status, body, _ = stack.call(
            "POST", "/api/v1/works", {"name": "kept", "description": "d", "type": "BATCH", "category": "PYSPARK"}, token
        )
        assert status == 201, body
        work_id = body["data"]["work_id"]
        status, _, _ = stack.call("POST", "/api/v1/users", {"username": "erin", "password": "erin-password"}, token)
        assert status == 201
    finally:
        assert stack.stop() == 0
    assert "state saved" in "".join(stack.output)

    again = StackProcess(tmp_path / "state")
    again.start()
    try:
        assert "items restored" in "".join(again.output)
        token = again.login()  # the same signing key: old and new tokens both verify
        status, body, _ = again.call("GET", f"/api/v1/works/{work_id}", token=token)
        assert status == 200 and body["data"]["name"] == "kept"
        assert again.login("erin", "erin-password")
        # the CLI reaches the running stack through the state directory
        env = {**os.environ, "SPARKGATE_STATE_DIR": str(tmp_path / "state"), "SPARKGATE_NEW_PASSWORD": "frank-password"}
        env.pop("AWS_ENDPOINT_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "chalicelib.cli", "create-user", "--username", "frank"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert again.login("frank", "frank-password")
        status, body, _ = again.call("GET", "/api/v1/works", token=token, headers={"Authorization": "nope"})
        assert status == 401
    finally:
        again.stop()
