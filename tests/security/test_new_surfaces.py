"""Hostile tests of the surfaces landed on 2026-12-03 (security review), without a stack.

Work artefacts are resolved (realpath, inside the owner's area) when a run is requested, then read
by root later: by the handler (SPARK_SQL / PYSPARK text) and by the artefact supervisor (FLINK_SQL
text, the FLINK_JAR bytes it hands to the sandbox). The owner's kernels can change their own area at
any time, so a link planted after the check must not make root read another file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

OWNER = "a" * 32
SECRET = "SGSECRET-not-for-users"


@pytest.fixture
def area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    users = tmp_path / "users"
    own = users / OWNER
    own.mkdir(parents=True)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key").write_text(SECRET)
    (tmp_path / "private" / "job.sql").write_text(f"SELECT '{SECRET}'")
    monkeypatch.setenv("SPARKGATE_USER_ROOT", str(users))
    monkeypatch.setenv("SPARKGATE_WORK_ROOTS", str(tmp_path / "no-shared-root"))
    return own


def _resolved(area: Path, name: str, text: str) -> Any:
    from chalicelib import work_runs

    (area / "sub").mkdir(exist_ok=True)
    (area / "sub" / name).write_text(text)
    artefact = work_runs.resolve_artefact(str(area / "sub" / name), OWNER)
    assert artefact.location == "local" and artefact.path == str(area / "sub" / name)
    return artefact


def test_artefact_text_is_read_after_check(area: Path) -> None:
    from chalicelib import work_runs

    artefact = _resolved(area, "job.sql", "SELECT 1")
    assert work_runs.read_text(artefact) == "SELECT 1"


def test_symlink_planted_after_check_is_not_followed(area: Path) -> None:
    from chalicelib import work_runs

    artefact = _resolved(area, "job.sql", "SELECT 1")
    os.unlink(artefact.path)
    os.symlink(area.parent.parent / "private" / "key", artefact.path)
    with pytest.raises(work_runs.RunError) as err:
        work_runs.read_text(artefact)
    assert SECRET not in str(err.value)


def test_folder_link_planted_after_check_is_not_followed(area: Path) -> None:
    from chalicelib import work_runs

    artefact = _resolved(area, "job.sql", "SELECT 1")
    os.rename(area / "sub", area / "old")
    os.symlink(area.parent.parent / "private", area / "sub")  # sub/job.sql is now the private one
    with pytest.raises(work_runs.RunError) as err:
        work_runs.read_text(artefact)
    assert SECRET not in str(err.value)


def test_fifo_planted_after_check_does_not_hang_root(area: Path) -> None:
    from chalicelib import work_runs

    artefact = _resolved(area, "job.sql", "SELECT 1")
    os.unlink(artefact.path)
    os.mkfifo(artefact.path)
    with pytest.raises(work_runs.RunError):
        work_runs.read_text(artefact)


def test_flink_jar_supervisor_never_opens_a_planted_link(area: Path) -> None:
    from chalicelib.runners import flink

    artefact = _resolved(area, "work.jar", "PK-not-really-a-jar")
    run = {"location": "local", "path": artefact.path, "artefact": artefact.uri, "main_class": "com.example.Main"}
    job = {"exec_id": "exec-1", "artefact_run": run}
    spec, handle = flink._spec(job)
    assert spec["mode"] == "jar" and spec["main_class"] == "com.example.Main"
    assert handle is not None
    with handle:
        assert handle.read() == b"PK-not-really-a-jar"
    os.unlink(artefact.path)
    os.symlink(area.parent.parent / "private" / "key", artefact.path)
    with pytest.raises(OSError):
        flink._spec(job)


def test_flink_result_metadata_and_message_count_count_against_the_byte_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sandboxed Flink side runs as the user (whose jar can ptrace it): what it reports must not make
    the root supervisor hold or write more than SPARKGATE_MAX_RESULT_BYTES (metadata was not counted, nor
    the number of objects: 1000 result sets of 64 MiB metadata each, or millions of empty pages)."""
    from chalicelib.runners.flink import _Results

    monkeypatch.setenv("SPARKGATE_MAX_RESULT_BYTES", "100000")
    huge = [{"columnName": "c" * 1000, "dataType": "bigint"}] * 200  # ~200 kB of metadata, no rows
    results = _Results("u-budget", "c" * 32)
    results.result({"t": "result", "index": 0, "metadata": huge, "rows": []})
    assert results.over and "SPARKGATE_MAX_RESULT_BYTES" in results.over
    assert results.documents == {}

    many = _Results("u-budget", "d" * 32)
    for index in range(1000):  # empty result sets: each is an object written
        many.result({"t": "result", "index": index, "metadata": [], "rows": []})
    assert many.over and len(many.documents) < 1000
