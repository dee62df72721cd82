"""The Job life-cycle table (chalicelib.job_status): its shape, its use by every status write."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from chalicelib import jobs
from chalicelib.job_status import ACTIVE, FINAL, MOVES, QUEUED, JobStatus, check, is_legal, sources

ROOT = Path(__file__).resolve().parents[2]
NAMES = {
    "jobs.QUEUED": QUEUED,
    "jobs.ACTIVE": ACTIVE,
    "jobs.FINAL": FINAL,
    "QUEUED": QUEUED,
    "ACTIVE": ACTIVE,
    "from_statuses": ACTIVE,  # sessions._reap: Running, or (batch) any active status
}


def test_final_statuses_never_move_and_every_status_reaches_an_end() -> None:
    assert set(MOVES) == set(JobStatus)
    for final in FINAL:
        assert MOVES[final] == frozenset()
    for status in ACTIVE:
        assert MOVES[status] & set(FINAL) == set(FINAL)
    assert not is_legal("Succeed", "Running") and not is_legal("Running", "Scheduled")
    assert not is_legal("Running", "Bogus") and not is_legal("Bogus", "Failed")


def test_sources_and_check() -> None:
    assert sources("Running") == ("Inited", "WaitForRetry", "Scheduled")
    assert sources("Succeed", only=("Running",)) == ("Running",)
    assert sources("Scheduled") == ("Inited", "WaitForRetry")
    check(("Scheduled",), "Running")
    with pytest.raises(ValueError, match="no legal move to Running from Succeed"):
        check(("Scheduled", "Succeed"), "Running")
    with pytest.raises(ValueError):
        check((), "Failed")


def test_the_domain_uses_the_tables_names() -> None:
    assert jobs.FINAL == FINAL and jobs.QUEUED == QUEUED and jobs.ACTIVE == ACTIVE
    assert jobs.RUNNING == "Running" and isinstance(jobs.RUNNING, JobStatus)


def _value(node: ast.expr) -> tuple[str, ...] | str | None:
    """A literal status, a tuple of them, or a known group name; None for what only runs can tell."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Tuple):
        items = [_value(e) for e in node.elts]
        if all(isinstance(i, str) for i in items):
            return tuple(str(i) for i in items)
        return None
    name = ast.unparse(node)
    if name in NAMES:
        return tuple(str(s) for s in NAMES[name])
    for status in JobStatus:
        if name.endswith(f".{status.name}") or name == status.name:
            return str(status)
    return None


def test_every_status_write_in_the_code_is_a_legal_move() -> None:
    checked = 0
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("job_store.transition")):
                continue
            if len(node.args) < 3:
                continue
            froms, to = _value(node.args[1]), _value(node.args[2])
            if froms is None or not isinstance(to, str):
                continue  # computed at run time: store.jobs.transition checks those when they happen
            froms = (froms,) if isinstance(froms, str) else froms
            for status in froms:
                assert is_legal(status, to), f"{path.relative_to(ROOT)}:{node.lineno}: {status} -> {to}"
            checked += 1
    assert checked >= 15, f"only {checked} status writes found: has the store's function been renamed?"


def test_the_store_refuses_an_illegal_move_before_any_request() -> None:
    from chalicelib.store import jobs as job_store

    with pytest.raises(ValueError):
        job_store.transition("no-such-job", ("Succeed",), "Running")
