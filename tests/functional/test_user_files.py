"""Per-user files, tried as a hostile tenant would: /loadfile paths, a work's artefact, a map's icon_path.

Every path goes through ``user_files.resolve_local`` / ``upload_key``: only the caller's own area
(``<SPARKGATE_USER_ROOT>/<user id>``), the shared roots and the caller's own uploads are readable, and
anything else (another user's file, the state dir, a symlink or a pattern leading out) answers exactly
like a missing file. Sessions are faked: nothing here starts a driver.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from tests.conftest import ROOT
from tests.functional.conftest import Api


@dataclass
class Tenants:
    api: Api
    alice: str  # token
    alice_id: str
    bob: str
    bob_id: str
    shared: Path
    area: Path  # alice's own area
    bob_area: Path
    tmp: Path


@pytest.fixture
def tenants(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tenants]:
    from chalicelib import sessions
    from chalicelib.config import settings
    from chalicelib.tokens import verify_token
    from chalicelib.users import ensure_user

    monkeypatch.setattr(sessions, "ensure_session_driver", lambda *a, **k: {"generation": 1})
    monkeypatch.setattr(sessions, "stop_session", lambda *a, **k: None)
    monkeypatch.setenv("SPARKGATE_SYNC_WAIT_SECONDS", "0")
    monkeypatch.delenv("SPARKGATE_WORK_ROOTS", raising=False)
    shared, users = tmp_path / "shared", tmp_path / "users"
    monkeypatch.setenv("SPARKGATE_DATA_ROOTS", str(shared))
    monkeypatch.setenv("SPARKGATE_USER_ROOT", str(users))

    state = settings().state_dir
    state.mkdir(parents=True, exist_ok=True)
    (state / "jwt.key").write_text("signing key\n")
    (tmp_path / "secret.csv").write_text("s\n1\n")
    (shared / "data").mkdir(parents=True)
    (shared / "data" / "taxi.csv").write_text("a,b\n1,2\n")
    (shared / "data" / "more.csv").write_text("a,b\n3,4\n")
    (shared / "icons").mkdir()
    (shared / "icons" / "pin.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    os.symlink(state, shared / "statelink")  # a symlink out of the root
    os.symlink(tmp_path / "secret.csv", shared / "out.csv")
    (shared / "leaky").mkdir()
    (shared / "leaky" / "ok.csv").write_text("a\n1\n")
    os.symlink(tmp_path / "secret.csv", shared / "leaky" / "part-1.csv")  # a folder with a link out

    from app import app

    with Client(app, project_dir=str(ROOT), stage_name="local") as client:
        api = Api(client)
        ensure_user("alice", "alice-password-1", admin=False)
        ensure_user("bob", "bob-password-1", admin=False)
        alice, bob = api.login("alice", "alice-password-1"), api.login("bob", "bob-password-1")
        alice_id, bob_id = verify_token(alice).user_id, verify_token(bob).user_id
        area, bob_area = users / alice_id, users / bob_id
        area.mkdir(parents=True)
        bob_area.mkdir(parents=True)
        (area / "mine.csv").write_text("m\n1\n")
        (area / "job.sql").write_text("select 'alice' as who\n")
        (area / "icon.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        with open(area / "huge.png", "wb") as big:
            big.truncate(5 * 1024 * 1024 + 1)
        (bob_area / "private.csv").write_text("bob's secret\n")
        (bob_area / "private.sql").write_text("select 'bob private' as leaked\n")
        (bob_area / "icon.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        os.symlink(bob_area / "private.csv", area / "to_bob.csv")  # from the own area into another user's
        os.symlink("/etc/passwd", area / "passwd.csv")
        assert api.call("POST", "/scope", {"scope": "s"}, alice)[0] == 200
        yield Tenants(api, alice, alice_id, bob, bob_id, shared, area, bob_area, tmp_path)


def _load(t: Tenants, path: Any, token: str | None = None) -> tuple[int, Any, Any]:
    spec = {"name": "t", "format": "csv", "path": path}
    return t.api.call("POST", "/loadfile", {"scope": "s", "tables": [spec]}, token or t.alice)


def _tables(t: Tenants, body: dict[str, Any]) -> list[dict[str, Any]]:
    from chalicelib.store import jobs as job_store

    job = job_store.get_job(body["execID"])
    assert job is not None
    tables: list[dict[str, Any]] = job["geo_op"]["tables"]
    return tables


def _refused(answer: tuple[int, Any, Any]) -> str:
    status, body, _ = answer
    assert status == 400 and body["status"] == "error" and body["code"] == 400, body
    message: str = body["message"]
    return message


def test_loadfile_reads_the_shared_roots_the_own_area_and_expands_patterns(tenants: Tenants) -> None:
    t = tenants
    status, body, _ = _load(t, str(t.shared / "data" / "taxi.csv"))
    assert status == 202, body
    assert _tables(t, body)[0]["path"] == str((t.shared / "data" / "taxi.csv").resolve())
    for own in ("mine.csv", str(t.area / "mine.csv")):  # relative paths start in the own area
        status, body, _ = _load(t, own)
        assert status == 202 and _tables(t, body)[0]["path"] == str((t.area / "mine.csv").resolve())
    status, body, _ = _load(t, "data/taxi.csv")  # ... then in each shared root
    assert status == 202 and _tables(t, body)[0]["path"] == str((t.shared / "data" / "taxi.csv").resolve())
    # a pattern is expanded here and Spark gets the explicit list (one match: ``path``; several: ``paths``)
    status, body, _ = _load(t, str(t.shared / "data" / "*.csv"))
    table = _tables(t, body)[0]
    assert status == 202 and "path" not in table
    assert table["paths"] == sorted(str((t.shared / "data" / n).resolve()) for n in ("more.csv", "taxi.csv"))
    status, body, _ = _load(t, str(t.shared / "data" / "{taxi,nothing}.cs[v]"))
    assert status == 202 and _tables(t, body)[0]["path"] == str((t.shared / "data" / "taxi.csv").resolve())
    status, body, _ = _load(t, str(t.shared / "data"))  # a folder whose every entry is in the root
    assert status == 202


def test_loadfile_refusals_answer_like_a_missing_file(tenants: Tenants) -> None:
    t = tenants
    missing = _refused(_load(t, str(t.area / "nothing.csv")))
    assert str(t.area) in missing and str(t.shared.resolve()) in missing and "SPARKGATE_DATA_ROOTS" in missing
    assert t.bob_id not in missing
    hostile = {
        "absolute outside": "/etc/passwd",
        "an existing file outside": str(t.tmp / "secret.csv"),
        "the state dir": str(t.tmp / "state" / "jwt.key"),
        "symlink out of a root": str(t.shared / "out.csv"),
        "symlinked folder out of a root": str(t.shared / "statelink" / "jwt.key"),
        "own area -> another user's": str(t.area / "to_bob.csv"),
        "own area -> /etc/passwd": "passwd.csv",
        "another user's file": str(t.bob_area / "private.csv"),
        "another user's missing file": str(t.bob_area / "nothing.csv"),
        "another user's folder": str(t.bob_area),
        "a folder holding a link out": str(t.shared / "leaky"),
        "pattern through a symlink": str(t.shared / "statelin[k]" / "jwt.key"),
        "pattern with a match outside": str(t.shared / "*.csv"),
        "pattern matching nothing": str(t.shared / "data" / "*.parquet"),
        "pattern rooted outside": "/etc/pass*",
        "pattern into another user's area": str(t.bob_area.parent / "*" / "private.csv"),
        "brace into another user's area": str(t.area.parent) + "/{" + t.alice_id + "," + t.bob_id + "}/*.csv",
        "relative missing": "nothing.csv",
    }
    for name, path in hostile.items():
        assert _refused(_load(t, path)) == missing, name
    text_only: dict[str, tuple[Any, str]] = {
        "traversal": (f"{t.shared}/data/../../secret.csv", "'..'"),
        "traversal relative": ("../bob/private.csv", "'..'"),
        "traversal in a brace": (f"{t.shared}/{{data,..}}/secret.csv", "'..'"),
        "NUL byte": (f"{t.shared}/data/taxi.csv\x00.png", "NUL"),
        "control character": (f"{t.shared}/data/ta\nxi.csv", "control"),
        "file: scheme": ("file:///etc/passwd", "no URL scheme"),
        "file: without slashes": ("file:/etc/passwd", "no URL scheme"),
        "hdfs": ("hdfs://nn/data.csv", "no URL scheme"),
        "http": ("http://169.254.169.254/latest/meta-data", "no URL scheme"),
        "very long": ("/" + "a" * 5000, "at most 4096"),
        "empty": ("", "path is required"),
        "not a string": (["/etc/passwd"], "path is required"),
    }
    for name, (path, needle) in text_only.items():
        message = _refused(_load(t, path))
        assert needle in message, (name, message)
    # uploads: only the caller's own prefix; another user's key answers like a missing one of theirs
    other = _refused(_load(t, f"s3://sparkgate/uploads/{t.bob_id}/private.csv"))
    assert other == _refused(_load(t, f"s3://sparkgate/uploads/{t.bob_id}/never-uploaded.csv"))
    assert other == _refused(_load(t, "s3://sparkgate/results/x/y/_0.json"))
    assert other == _refused(_load(t, f"s3://other-bucket/uploads/{t.alice_id}/a.csv"))
    assert t.alice_id in other and t.bob_id not in other
    assert "'..'" in _refused(_load(t, f"s3://sparkgate/uploads/{t.alice_id}/../{t.bob_id}/private.csv"))
    assert "'{'" in _refused(_load(t, f"s3://sparkgate/uploads/{t.alice_id}/{{a,..}}/{t.bob_id}/private.csv"))
    status, body, _ = _load(t, f"s3a://sparkgate/uploads/{t.alice_id}/part-*.csv")
    assert status == 202 and _tables(t, body)[0]["path"] == f"s3a://sparkgate/uploads/{t.alice_id}/part-*.csv"
    # bob, the owner, may read his own file
    assert t.api.call("POST", "/scope", {"scope": "s"}, t.bob)[0] == 200
    assert _load(t, "private.csv", t.bob)[0] == 202


def test_a_real_name_holding_pattern_characters_is_refused(tenants: Tenants) -> None:
    """Spark would expand ``a[b]`` again: a symlink to such a folder must not smuggle a pattern past the check."""
    t = tenants
    (t.area / "a[b]").mkdir()
    (t.area / "a[b]" / "f.csv").write_text("x\n")
    os.symlink(t.area / "a[b]", t.area / "plain")
    assert "pattern" in _refused(_load(t, str(t.area / "plain" / "f.csv")))


def test_user_root_under_a_shared_root_still_hides_other_users(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tenants
    monkeypatch.setenv("SPARKGATE_DATA_ROOTS", f"{t.shared}:{t.tmp}")  # the user root is now inside a shared root
    missing = _refused(_load(t, str(t.area / "nothing.csv")))
    assert _refused(_load(t, str(t.bob_area / "private.csv"))) == missing
    assert _refused(_load(t, str(t.tmp / "state" / "jwt.key"))) == missing  # the state dir never
    assert _load(t, str(t.tmp / "secret.csv"))[0] == 202  # the rest of that root is shared


def _map(t: Tenants, icon: Any) -> tuple[int, Any, Any]:
    params = {"width": 64, "height": 64, "bounding_box": [-74.1, 40.6, -73.7, 40.9], "icon_path": icon}
    return t.api.call("POST", "/icon_viz", {"scope": "s", "sql": "select 1", "params": params}, t.alice)


def test_icon_path_is_an_own_or_shared_image_and_never_tells_exists_from_missing(tenants: Tenants) -> None:
    from chalicelib.store import jobs as job_store

    t = tenants
    status, body, _ = _map(t, "icon.png")
    assert status == 202, body
    job = job_store.get_job(body["execID"])
    assert job is not None and job["geo_op"]["params"]["icon_path"] == str((t.area / "icon.png").resolve())
    assert _map(t, str(t.shared / "icons" / "pin.png"))[0] == 202
    missing = _refused(_map(t, "/nonexistent/icon.png"))
    assert missing.startswith("params.icon_path is not a file in your data area")
    for icon in (
        "/etc/passwd",
        "/etc/shadow",
        "/dev/zero",
        "/proc/self/environ",
        str(t.bob_area / "icon.png"),
        str(t.bob_area / "missing.png"),
        str(t.area / "to_bob.csv"),
        str(t.tmp / "state" / "jwt.key"),
        str(t.shared / "statelink" / "jwt.key"),
        str(t.shared / "icons"),  # a folder
        "nothing.png",
    ):
        assert _refused(_map(t, icon)) == missing, icon
    assert "larger than" in _refused(_map(t, "huge.png"))
    assert "one file" in _refused(_map(t, str(t.shared / "icons" / "*.png")))
    assert "no URL scheme" in _refused(_map(t, "file:///etc/passwd"))
    assert "NUL" in _refused(_map(t, "icon.png\x00"))


def _work(t: Tenants, token: str | None = None, **fields: Any) -> tuple[int, Any, Any]:
    body = {"name": fields.pop("name", "w"), "description": "d", "type": "BATCH", "category": "SPARK_SQL", **fields}
    return t.api.call("POST", "/api/v1/works", body, token or t.alice)


def _refused_work(answer: tuple[int, Any, Any]) -> str:
    status, body, _ = answer
    assert status == 400 and body["code"] == 400100, body
    message: str = body["msg"]
    assert message.startswith("work_directory"), message
    return message


def test_work_directory_is_checked_when_saved(tenants: Tenants) -> None:
    t = tenants
    outside = _refused_work(_work(t, work_directory="/etc/passwd"))
    assert str(t.area) in outside and "SPARKGATE_DATA_ROOTS" in outside and t.bob_id not in outside
    for path in (
        str(t.bob_area / "private.sql"),
        str(t.bob_area / "never.sql"),
        str(t.area / "to_bob.csv"),
        str(t.tmp / "state" / "jwt.key"),
        str(t.shared / "statelink" / "x.sql"),
        str(t.shared / "data"),  # a folder
    ):
        assert _refused_work(_work(t, work_directory=path)) == outside, path
    assert "'..'" in _refused_work(_work(t, work_directory="../x/job.sql"))
    assert "one file" in _refused_work(_work(t, work_directory=str(t.area / "*.sql")))
    assert "NUL" in _refused_work(_work(t, work_directory="job.sql\x00"))
    assert "no URL scheme" in _refused_work(_work(t, work_directory="hdfs://nn/job.sql"))
    assert "1024" in _work(t, work_directory="/" + "a" * 2000)[1]["msg"]
    uploads = _refused_work(_work(t, work_directory=f"s3://sparkgate/uploads/{t.bob_id}/private.sql"))
    assert uploads == _refused_work(_work(t, work_directory=f"s3://sparkgate/uploads/{t.bob_id}/nothing.sql"))
    assert uploads == _refused_work(_work(t, work_directory="s3://sparkgate/bootstrap.sh"))
    assert t.alice_id in uploads and t.bob_id not in uploads
    # the own area, a shared root and the own uploads are fine; the file may come later
    for ok in ("job.sql", str(t.area / "later.sql"), "data/taxi.csv", f"s3://sparkgate/uploads/{t.alice_id}/j.sql"):
        status, body, _ = _work(t, name=f"ok-{abs(hash(ok))}", work_directory=ok)
        assert status == 201, (ok, body)
    # PATCH is checked the same way, and a refused PATCH changes nothing
    status, body, _ = _work(t, name="patched", work_directory="job.sql")
    path = f"/api/v1/works/{body['data']['work_id']}"
    status, got, _ = t.api.call("PATCH", path, {"work_directory": str(t.bob_area / "private.sql")}, t.alice)
    assert status == 400 and got["msg"] == outside
    current = t.api.call("GET", path, None, t.alice)[1]["data"]
    assert current["work_directory"] == "job.sql" and current["version"] == 1


def test_a_run_reads_only_the_owners_artefact(tenants: Tenants, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import submit
    from chalicelib.config import settings
    from chalicelib.store.aws import client

    t = tenants
    dispatched: list[dict[str, Any]] = []
    monkeypatch.setattr(submit, "dispatch", dispatched.append)

    def run(work_id: str) -> dict[str, Any]:
        status, body, _ = t.api.call("POST", f"/api/v1/works/{work_id}/tasks", None, t.alice)
        assert status == 201, body
        task: dict[str, Any] = body["data"]
        return task

    os.symlink(t.area / "job.sql", t.area / "current.sql")
    work = _work(t, name="swap", work_directory="current.sql")[1]["data"]
    task = run(work["work_id"])
    assert task["status"] == 2 and "select 'alice'" in dispatched[-1]["code"]
    t.api.call("POST", f"/api/v1/tasks/{task['task_id']}/cancel", None, t.alice)
    # the saved path is swapped for a link into bob's area: the run fails like a missing file would
    os.unlink(t.area / "current.sql")
    os.symlink(t.bob_area / "private.sql", t.area / "current.sql")
    swapped = run(work["work_id"])
    os.unlink(t.area / "current.sql")
    gone = run(work["work_id"])
    assert swapped["status"] == gone["status"] == 3
    assert swapped["error"] == gone["error"] and gone["error"].startswith("work_directory is not a file")
    assert all("bob private" not in job["code"] for job in dispatched) and len(dispatched) == 1
    # an upload: the owner's own object runs; a missing one of theirs fails with the uploads message
    key = f"uploads/{t.alice_id}/job.sql"
    client("s3").put_object(Bucket=settings().bucket_name, Key=key, Body=b"select 'uploaded'\n")
    mine = _work(t, name="s3", work_directory=f"s3://sparkgate/{key}")[1]["data"]
    assert run(mine["work_id"])["status"] == 2 and "uploaded" in dispatched[-1]["code"]
    lost = _work(t, name="lost", work_directory=f"s3://sparkgate/uploads/{t.alice_id}/lost.sql")[1]["data"]
    failed = run(lost["work_id"])
    assert failed["status"] == 3 and failed["error"] == (
        f"work_directory is not an object in your uploads (s3://sparkgate/uploads/{t.alice_id}/)"
    )
    # a work saved before this check with another user's key (written straight to the store) cannot run it
    from chalicelib.store import works as work_store

    bob_key = f"uploads/{t.bob_id}/private.sql"
    client("s3").put_object(Bucket=settings().bucket_name, Key=bob_key, Body=b"select 'bob private'\n")
    legacy = _work(t, name="legacy", work_directory="job.sql")[1]["data"]
    stored = work_store.get_work(legacy["work_id"])
    assert stored is not None
    stored.update(work_directory=f"s3://sparkgate/{bob_key}", version=2)
    work_store.replace_work(stored, 1, stored["name"])
    refused = run(legacy["work_id"])
    assert refused["status"] == 3 and t.bob_id not in refused["error"] and "your uploads" in refused["error"]
    assert all("bob private" not in job["code"] for job in dispatched)
