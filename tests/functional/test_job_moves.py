"""``store.jobs.move``: the write condition comes from the life-cycle table (on moto, with a real Job)."""

from __future__ import annotations

from chalicelib.tokens import Principal


def test_a_job_moves_only_along_the_table(aws: None) -> None:
    from chalicelib import jobs
    from chalicelib.store import jobs as job_store

    job = jobs.new_job(jobs.JobRequest(owner=Principal("u-1", "ann"), code="select 1", run_type="sql", session_id="s"))
    assert job["status"] == "Scheduled"
    running = job_store.move(job["exec_id"], jobs.RUNNING, only_from=(jobs.SCHEDULED,), dequeue=True)
    assert running is not None and running["status"] == "Running"
    assert job_store.move(job["exec_id"], jobs.RUNNING) is None  # Running is not a source of Running
    done = job_store.move(job["exec_id"], jobs.SUCCEED, {"ended_at": "now"})
    assert done is not None and done["status"] == "Succeed"
    for status in (jobs.FAILED, jobs.CANCELLED, jobs.RUNNING):
        assert job_store.move(job["exec_id"], status) is None  # final: never moves again
    assert job_store.get_job(job["exec_id"])["status"] == "Succeed"  # type: ignore[index]
