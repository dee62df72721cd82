"""A user cannot hurt the host beyond their quota (carol's tests, so only her session suffers): caps on
active Jobs and live sessions answer 429; a fork bomb is bounded; a memory hog, a kernel that dies and
a JVM out of memory each end their Job Failed with the reason within 60 s; processes a Job starts do
not outlive it, nothing of the user's uid outlives their session, and no zombie is left behind."""

from __future__ import annotations

import os
import re
import secrets
import signal
import time
from typing import Any

import pytest

from tests.security.conftest import (
    BASE,
    FINAL,
    KERNEL_MEMORY_MB,
    KERNEL_PROCESSES,
    MAX_ACTIVE_JOBS_PER_USER,
    MAX_SESSIONS_PER_USER,
    Tenant,
    Tenants,
    parse_probe,
    probe_code,
    processes,
    stack_tree,
    wait_until,
)

REASON = re.compile(r"memory|oom|killed|died|signal|driver|kernel", re.I)


@pytest.fixture(scope="module")
def carol(tenants: Tenants) -> Tenant:
    return tenants.carol


def _ended_failed_in_time(carol: Tenant, code: str, run_type: str, limit: float = 60) -> tuple[str, str, float]:
    """Submit; once Running, the Job must end within ``limit`` s. Answers (status, error, seconds)."""
    exec_id, task_id = carol.submit(code, run_type)
    running = carol.wait(exec_id, 240, ("Running", *FINAL))
    started = time.monotonic()
    status = carol.wait(exec_id, limit) if running not in FINAL else running
    took = time.monotonic() - started
    if status not in FINAL:
        carol.kill(exec_id)
        carol.wait(exec_id, 30)
    error = str(carol.ok("GET", f"{BASE}/jobhistory/{task_id}/get")["task"].get("errDesc") or "")
    return status, error, took


def test_active_jobs_are_capped_per_user(carol: Tenant) -> None:
    blocker, _ = carol.submit("import time\ntime.sleep(60)")
    accepted = [blocker]
    refusal: tuple[int, Any] | None = None
    try:
        for _ in range(MAX_ACTIVE_JOBS_PER_USER + 12):
            body = {"executionCode": "select 1", "runType": "sql", "executeApplicationName": "spark", "params": {}}
            status, answer = carol.call("POST", f"{BASE}/entrance/execute", body)
            if status != 200:
                refusal = (status, answer)
                break
            accepted.append(answer["data"]["execID"])
        assert refusal is not None, f"{len(accepted)} active Jobs accepted (cap {MAX_ACTIVE_JOBS_PER_USER})"
        assert refusal[0] == 429, refusal
        assert re.search(r"limit|quota|too many|at most", str(refusal[1]), re.I), refusal
        assert len(accepted) <= MAX_ACTIVE_JOBS_PER_USER
    finally:
        carol.call("POST", f"{BASE}/entrance/{blocker}/killJobs", {"idList": accepted, "taskIDList": []})
        for exec_id in accepted:
            carol.kill(exec_id)
        for exec_id in accepted:
            carol.wait(exec_id, 60)
    after = carol.run("select 'capacity is back' as s", "sql")
    assert after.status == "Succeed", after.error


def test_live_sessions_are_capped_per_user(carol: Tenant) -> None:
    scope = f"caps{secrets.token_hex(3)}"
    status, answer = carol.call("POST", "/scope", {"scope": scope})
    assert status == 200, answer
    refusal: tuple[int, Any] | None = None
    made = 0
    try:
        for i in range(MAX_SESSIONS_PER_USER + 1):
            body = {"scope": scope, "session": f"s{i}", "master-addr": "local[1]"}
            status, answer = carol.call("POST", "/session", body)
            if status != 200:
                refusal = (status, answer)
                break
            made += 1
        assert refusal is not None, f"{made} more sessions accepted (cap {MAX_SESSIONS_PER_USER} per user)"
        assert refusal[0] == 429, refusal
        assert re.search(r"limit|quota|too many|at most", str(refusal[1]), re.I), refusal
    finally:
        carol.call("DELETE", f"/scope/{scope}")


LEFTOVER_PROBE = r"""
import os, subprocess, sys
marker = P["marker"]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker], start_new_session=True)
pid = os.fork()
if pid == 0:  # a daemon: double fork, own session, parent exits
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", marker + "-daemon"])
    os._exit(0)
os.waitpid(pid, 0)
report({"child": child.pid})
"""


def _with_marker(marker: str) -> list[int]:
    return [p.pid for p in processes().values() if marker in p.cmdline and p.state not in ("Z", "X")]


def test_processes_a_job_starts_do_not_outlive_it(carol: Tenant) -> None:
    marker = f"sg-leftover-{secrets.token_hex(4)}"
    try:
        carol.probe(LEFTOVER_PROBE, {"marker": marker})
        assert wait_until(lambda: not _with_marker(marker), 15), f"still running after the Job: {_with_marker(marker)}"
    finally:
        for pid in _with_marker(marker):
            os.kill(pid, signal.SIGKILL)


FORK_PROBE = r"""
import os, signal
read_end, write_end = os.pipe()
children, error = [], None
for _ in range(P["tries"]):
    try:
        pid = os.fork()
    except OSError as err:
        error = "%s: %s" % (type(err).__name__, err)
        break
    if pid == 0:
        os.close(write_end)
        os.read(read_end, 1)  # until the parent closes the pipe
        os._exit(0)
    children.append(pid)
os.close(write_end)
for pid in children:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
for pid in children:
    try:
        os.waitpid(pid, 0)
    except OSError:
        pass
report({"forked": len(children), "error": error})
"""


def test_a_fork_bomb_is_bounded(carol: Tenant, tenants: Tenants) -> None:
    tries = 1500
    outcome = carol.run(probe_code(FORK_PROBE, {"tries": tries}))
    assert outcome.status in FINAL
    if outcome.status == "Succeed":
        rep = outcome.probe()
        assert rep["forked"] < tries, f"{rep['forked']} processes forked and no limit stopped it"
        assert rep["forked"] <= KERNEL_PROCESSES, rep
    assert tenants.stack.call("GET", "/api/v1/works", token=carol.token)[0] == 200  # the stack still serves


HOG = """
chunks = []
for i in range(24):
    chunks.append(b"x" * (256 << 20))  # 256 MiB each, written: resident
    print("held", (i + 1) * 256, "MiB", flush=True)
"""


def test_a_memory_hog_ends_failed_with_the_reason_within_60_s(carol: Tenant) -> None:
    status, error, took = _ended_failed_in_time(carol, HOG, "python")
    assert status == "Failed", f"a 6 GiB hog ended {status} after {took:.0f} s ({KERNEL_MEMORY_MB} MB allowed)"
    assert REASON.search(error), error
    assert took < 60


def test_a_kernel_that_dies_fails_its_job_with_the_reason_within_60_s(carol: Tenant) -> None:
    status, error, took = _ended_failed_in_time(
        carol, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "python"
    )
    assert status == "Failed" and took < 60, (status, took)
    assert REASON.search(error), error


def test_a_jvm_out_of_memory_fails_its_job_with_the_reason_within_60_s(carol: Tenant) -> None:
    status, error, took = _ended_failed_in_time(carol, "select id, repeat('x', 200) as pad from range(3000000)", "sql")
    assert status in FINAL, f"the Job was still Running {took:.0f} s after it started"
    if status == "Failed":
        assert REASON.search(error) or "OutOfMemory" in error, error
    assert took < 60
    after = carol.run("select 'serving' as s", "sql")
    assert after.status == "Succeed", after.error


SESSION_PROBE = r"""
import os, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", P["marker"]], start_new_session=True)
report({"uid": os.getuid()})
"""


def test_nothing_of_the_user_outlives_their_session_and_no_zombies_remain(carol: Tenant, tenants: Tenants) -> None:
    scope = f"end{secrets.token_hex(3)}"
    status, answer = carol.call("POST", "/scope", {"scope": scope})
    assert status == 200, answer
    marker = f"sg-session-{secrets.token_hex(4)}"
    try:
        status, answer = carol.geo(
            "POST", "/command", {"scope": scope, "command": probe_code(SESSION_PROBE, {"marker": marker})}
        )
        assert status == 200, answer
        uid = parse_probe(str(answer["output"]))["uid"]
        assert uid != 0, "carol's kernel runs as root: nothing tells her processes from the platform's"
    finally:
        carol.call("DELETE", f"/scope/{scope}")
    entrance = f"entrance-{carol.user_id}"

    def leftovers() -> list[str]:
        table = processes()
        keep = {p.pid for p in table.values() if entrance in p.cmdline}
        grew = True
        while grew:  # carol's entrance session (still live) and what runs below it
            grew = False
            for proc in table.values():
                if proc.ppid in keep and proc.pid not in keep:
                    keep.add(proc.pid)
                    grew = True
        return [
            f"{p.pid} {p.state} {p.cmdline[:80]}"
            for p in table.values()
            if (p.uid == uid and p.pid not in keep) or marker in p.cmdline
        ]

    assert wait_until(lambda: not leftovers(), 20), f"left after the session ended: {leftovers()}"

    def zombies() -> list[str]:
        tree = stack_tree(tenants.stack)
        return [
            f"{p.pid} (parent {p.ppid}: {tree[p.ppid].cmdline[:120] if p.ppid in tree else '?'})"
            for p in tree.values()
            if p.state == "Z"
        ]

    assert wait_until(lambda: not zombies(), 10), f"zombies under the stack: {zombies()}"
