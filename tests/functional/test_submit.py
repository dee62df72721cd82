"""The one submit path: its two orders, and what each leaves behind when a driver cannot start."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.tokens import Principal
from tests.functional.test_sessions import FakeRunner

OWNER = Principal("u-sub", "sue")


@pytest.fixture
def fake(aws: None) -> Iterator[FakeRunner]:
    from chalicelib import runners

    chosen = FakeRunner()
    runners.use_runner(chosen)
    yield chosen
    runners.use_runner(None)


def _request(**kw: Any) -> Any:
    from chalicelib import jobs

    return jobs.JobRequest(owner=OWNER, code="select 1", run_type="sql", **kw)


def test_driver_first_starts_the_session_driver_then_stores_the_job_with_the_cold_start_logged(
    fake: FakeRunner,
) -> None:
    from chalicelib import jobs, submit
    from chalicelib.store import logs as log_store

    job = submit.submit(_request(session_id="s-sub"), order=submit.DRIVER_FIRST, driver_config={"app_name": "x"})
    assert [s["session_id"] for s in fake.started] == ["s-sub"]
    assert job["status"] == "Scheduled" and job["log_lines"] == 1
    assert jobs.DRIVER_STARTING_LOG in log_store.read_log(job["exec_id"], 0, None)[0][1]


def test_driver_first_stores_nothing_when_the_driver_cannot_start(
    fake: FakeRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import jobs, submit

    stored: list[Any] = []
    monkeypatch.setattr(jobs, "new_job", stored.append)
    fake.fail_start = True
    with pytest.raises(RuntimeError, match="no capacity"):
        submit.submit(_request(session_id="s-none"), order=submit.DRIVER_FIRST)
    with pytest.raises(ValueError, match="session Job"):
        submit.submit(_request(), order=submit.DRIVER_FIRST)  # a batch driver needs its Job first
    assert stored == []


def test_store_first_answers_the_job_failed_when_its_driver_cannot_start(fake: FakeRunner) -> None:
    from chalicelib import submit
    from chalicelib.store import jobs as job_store

    fake.fail_start = True
    job = submit.submit(_request())
    assert job["status"] == "Failed" and "no capacity" in str(job["error"])
    assert job_store.get_job(job["exec_id"]) == job


def test_store_first_artefact_runs_go_to_the_chosen_runner(fake: FakeRunner) -> None:
    from chalicelib import jobs, submit

    request = jobs.JobRequest(owner=OWNER, code="-- SPARK_JAR x", run_type="jar", kind="task", quota=False)
    request.extra = {"artefact_run": {"engine": "spark", "artefact": "s3://b/a.jar", "main_class": "M"}}
    job = submit.submit(request)
    # the fake runner runs no artefacts: the one runner choice reached it, and the Job ended Failed
    assert job["status"] == "Failed" and job["error"] == "could not start: the fake runner runs no artefacts"
    assert fake.started == []


def test_before_dispatch_false_leaves_the_job_undispatched(fake: FakeRunner) -> None:
    from chalicelib import submit

    seen: list[str] = []
    job = submit.submit(_request(), before_dispatch=lambda j: seen.append(j["exec_id"]) is not None)
    assert seen == [job["exec_id"]] and fake.started == [] and job["status"] == "Scheduled"
