"""Artefact runs on a real local Spark: a SPARK_JAR work built by the test runs to Succeed / Failed."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.skipif(not shutil.which("javac") or not shutil.which("jar"), reason="needs a JDK")


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A moto server (reachable from driver processes) with the table and bucket; answers a work root."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(port=0)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("SPARKGATE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", str(tmp_path))
    monkeypatch.setenv("SPARKGATE_SPARK_MASTER", "local[1]")
    from chalicelib.config import settings
    from chalicelib.store.aws import reset
    from chalicelib.store.provision import ensure_table_and_bucket

    reset()
    ensure_table_and_bucket(settings())
    classes = tmp_path / "classes"
    subprocess.run(["javac", "-d", str(classes), str(FIXTURES / "jar" / "Hello.java")], check=True)
    subprocess.run(["jar", "cf", str(tmp_path / "hello.jar"), "-C", str(classes), "."], check=True)
    yield tmp_path
    reset()
    server.stop()


def _wait(principal: Any, task_id: str, timeout: float = 180) -> dict[str, Any]:
    from chalicelib import tasks

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = tasks.owned_task(principal, task_id)
        if task["status"] in (0, 3, 4, 5):
            return task
        time.sleep(1)
    raise AssertionError("task did not finish")


def test_spark_jar_succeeds_then_fails_and_retries(stack: Path) -> None:
    from chalicelib import tasks, works
    from chalicelib.tokens import Principal

    owner = Principal("u1", "alice")
    work = works.create_work(
        owner,
        {
            "name": "jar",
            "description": "d",
            "type": "BATCH",
            "category": "SPARK_JAR",
            "work_directory": "hello.jar",
            "main_class_name": "Hello",
            "extra_params": ["a", "b"],
        },
    )
    task = tasks.start_task(owner, works.get_owned_work(owner, work["work_id"]))
    done = _wait(owner, task["task_id"])
    assert done["status"] == 0, done
    assert done["run_time"] is not None and done["ended_at"]
    from chalicelib.store import jobs as job_store

    log = "\n".join(text for _, text in job_store.read_log(done["exec_id"]))
    assert "hello from jar a,b" in log

    works.update_work(owner, work["work_id"], {"extra_params": ["fail"]}, None)
    failing = tasks.start_task(owner, works.get_owned_work(owner, work["work_id"]))
    failed = _wait(owner, failing["task_id"])
    assert failed["status"] == 3 and "exited with code 3" in failed["error"]
    retry = tasks.retry_task(owner, failing["task_id"])
    assert retry["retry_of"] == failing["task_id"] and retry["attempt"] == 2
    assert _wait(owner, retry["task_id"])["status"] == 3
