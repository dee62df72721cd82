"""``jobs.new_job``: the fields it validates and sets win over a caller's ``extra``; the records stay plain dicts."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import jobs
from chalicelib.errors import BadRequest
from chalicelib.tokens import Principal


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``new_job`` without a table: the counter counts, the insert is captured, no quota is taken."""
    from chalicelib.store import counters, logs
    from chalicelib.store import jobs as job_store

    inserted: list[dict[str, Any]] = []
    numbers = iter(range(1, 100))
    monkeypatch.setattr(counters, "next_counter", lambda name: next(numbers))
    monkeypatch.setattr(job_store, "insert_job", inserted.append)
    monkeypatch.setattr(logs, "append_log", lambda *a, **k: True)
    return inserted


OWNER = Principal(user_id="u-alice", username="alice")


def _request(run_type: str = "sql", **kwargs: Any) -> jobs.JobRequest:
    return jobs.JobRequest(owner=OWNER, code="select 1", run_type=run_type, quota=False, **kwargs)


def test_extra_cannot_override_the_validated_fields(stored: list[dict[str, Any]]) -> None:
    hostile: Any = {
        "run_type": "python",
        "status": "Succeed",
        "owner": "u-mallory",
        "exec_id": "someone-elses",
        "task_id": 1,
        "runtime_seconds": 10**9,
        "work_id": "w1",
    }
    job = jobs.new_job(_request(extra=hostile, exec_id="e1"))
    assert job["run_type"] == "sql"
    assert job["status"] == jobs.SCHEDULED
    assert job["owner"] == "u-alice"
    assert job["exec_id"] == "e1"
    assert job["runtime_seconds"] == jobs.DEFAULT_RUNTIME_SECONDS
    assert job.get("work_id") == "w1"  # what extra is for still gets through
    assert stored == [job]
    assert type(job) is dict


def test_artefact_run_types_are_internal_to_task_jobs(stored: list[dict[str, Any]]) -> None:
    job = jobs.new_job(jobs.JobRequest(owner=OWNER, code="-- SPARK_JAR x", run_type="jar", kind="task", quota=False))
    assert job["run_type"] == "jar"
    with pytest.raises(BadRequest, match="runType"):
        jobs.new_job(_request(run_type="jar"))  # an entrance Job: a user's runType
    with pytest.raises(BadRequest, match="runType"):
        jobs.new_job(jobs.JobRequest(owner=OWNER, code="x", run_type="flink", kind="geo", quota=False))


def test_session_config_is_stored_only_when_given(stored: list[dict[str, Any]]) -> None:
    assert "session_config" not in jobs.new_job(_request())
    given = {"max_result_rows": 5}
    assert jobs.new_job(_request(session_config=given))["session_config"] == given
