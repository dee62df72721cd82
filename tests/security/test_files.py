"""Per-user files: a work runs, ``/loadfile`` reads and ``icon_path`` opens only the caller's own area,
own uploads and the shared roots. Another user's upload or area file answers exactly like a missing
one (no existence oracle), and no glob gets through a symlink the plain path check refuses."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from tests.security.conftest import BUCKET, Secrets, Tenants


def _same(a: str, path_a: str, b: str, path_b: str) -> tuple[str, str]:
    """Both messages with the path each named replaced, so only what they reveal is compared."""
    out = []
    for text, path in ((a, path_a), (b, path_b)):
        name = path.rsplit("/", 1)[-1]
        out.append(text.replace(path, "<PATH>").replace(name, "<NAME>"))
    return out[0], out[1]


# ---- works ------------------------------------------------------------------------------------------


def _work_pair(tenants: Tenants, private: str, missing: str) -> None:
    alice = tenants.alice
    task, outcome = alice.run_work("SPARK_SQL", private)
    text = json.dumps(task) + (outcome.text() if outcome else "")
    for marker in tenants.bob_markers.values():
        assert marker not in text, "alice's work ran bob's private SQL"
    assert task["status"] == 3, f"the run of another user's file did not fail: {task}"
    other, _ = alice.run_work("SPARK_SQL", missing)
    assert other["status"] == 3, other
    mine, theirs = _same(str(task["error"]), private, str(other["error"]), missing)
    assert mine == theirs, "another user's file answers unlike a missing one"


def test_a_work_cannot_run_another_users_upload(tenants: Tenants) -> None:
    bob = tenants.bob.user_id
    _work_pair(
        tenants,
        f"s3://{BUCKET}/uploads/{bob}/private.sql",
        f"s3://{BUCKET}/uploads/{bob}/missing-{secrets.token_hex(3)}.sql",
    )


def test_a_work_cannot_run_a_file_of_another_users_area(tenants: Tenants) -> None:
    area = tenants.layout.area(tenants.bob.user_id)
    assert (area / "private.sql").exists()
    _work_pair(tenants, str(area / "private.sql"), str(area / f"missing-{secrets.token_hex(3)}.sql"))


# ---- /loadfile --------------------------------------------------------------------------------------


def _load(tenants: Tenants, name: str, path: str) -> tuple[int, Any, str]:
    """/loadfile ``path`` as table ``name``; the status, the answer, and everything the user saw
    (the table's rows too, when it loaded)."""
    table = {"name": name, "format": "csv", "path": path, "options": {"header": "False"}}
    status, answer = tenants.alice.geo("POST", "/loadfile", {"scope": tenants.scope, "tables": [table]})
    seen = json.dumps(answer)
    if status == 200:
        _, rows = tenants.alice.geo("POST", "/query", {"scope": tenants.scope, "sql": f"select * from {name}"})
        seen += json.dumps(rows)
    return status, answer, seen


def _loadfile_pair(tenants: Tenants, private: str, missing: str) -> None:
    status, answer, seen = _load(tenants, f"t{secrets.token_hex(3)}", private)
    for marker in tenants.bob_markers.values():
        assert marker not in seen, "alice loaded bob's private file"
    assert status == 400, (status, answer)
    other_status, other, _ = _load(tenants, f"t{secrets.token_hex(3)}", missing)
    assert other_status == 400, other
    mine, theirs = _same(str(answer["message"]), private, str(other["message"]), missing)
    assert mine == theirs, "another user's file answers unlike a missing one"


def test_loadfile_of_another_users_upload_answers_like_a_missing_one(tenants: Tenants) -> None:
    bob = tenants.bob.user_id
    _loadfile_pair(
        tenants,
        f"s3://{BUCKET}/uploads/{bob}/private.csv",
        f"s3://{BUCKET}/uploads/{bob}/missing-{secrets.token_hex(3)}.csv",
    )


def test_loadfile_of_another_users_area_answers_like_a_missing_one(tenants: Tenants) -> None:
    area = tenants.layout.area(tenants.bob.user_id)
    assert (area / "private.csv").exists()
    _loadfile_pair(tenants, str(area / "private.csv"), str(area / f"missing-{secrets.token_hex(3)}.csv"))


LINK_PROBE = r"""
import os
os.makedirs(P["own"], exist_ok=True)
link = os.path.join(P["own"], "bobslink")
if not os.path.lexists(link):
    os.symlink(P["bob"], link)
report({"link": os.readlink(link)})
"""


@pytest.fixture(scope="module")
def alice_link(tenants: Tenants) -> str:
    """alice's own area holds a symlink to bob's area (she may make links in her own area)."""
    own = tenants.layout.area(tenants.alice.user_id)
    tenants.alice.probe(LINK_PROBE, {"own": str(own), "bob": str(tenants.layout.area(tenants.bob.user_id))})
    return str(own)


GLOBS = {
    "plain path through the link": "{shared}/statelink/jwt-keys.json",
    "glob on the link's name": "{shared}/statelin[k]/jwt-keys.json",
    "wildcard folder": "{shared}/*/jwt-keys.json",
    "wildcard file through the link": "{shared}/statelin?/*.json",
    "brace alternatives": "{shared}/{{statelink,nothing}}/jwt-keys.json",
    "own link to bob's area, plain": "{own}/bobslink/private.csv",
    "own link to bob's area, glob": "{own}/bobslin[k]/private.csv",
    "own link to bob's area, wildcard": "{own}/*/private.csv",
}


@pytest.mark.parametrize("case", list(GLOBS))
def test_no_path_or_glob_gets_through_a_symlink(
    case: str, tenants: Tenants, alice_link: str, platform_secrets: Secrets
) -> None:
    path = GLOBS[case].format(shared=tenants.layout.shared, own=alice_link)
    status, answer, seen = _load(tenants, f"g{secrets.token_hex(3)}", path)
    assert platform_secrets.found_in(seen) == [], f"{case}: the state dir leaked"
    assert tenants.bob_markers["csv"] not in seen, f"{case}: bob's file leaked"
    assert status == 400, f"{case}: {path} was loaded: {answer}"


def test_a_glob_inside_the_shared_root_still_loads(tenants: Tenants) -> None:
    status, answer, seen = _load(tenants, "globbed", f"{tenants.layout.shared}/point[s].csv")
    assert status == 200, answer
    assert "-73.99" in seen


# ---- icon_path --------------------------------------------------------------------------------------


def _icon(tenants: Tenants, path: str) -> tuple[int, Any]:
    params = {"width": 32, "height": 32, "bounding_box": [-74.0, 40.7, -73.9, 40.8], "icon_path": path}
    body = {"scope": tenants.scope, "sql": "select ST_Point(x, y) as point from points", "params": params}
    return tenants.alice.geo("POST", "/icon_viz", body)


@pytest.mark.parametrize("where", ["outside every root", "another user's area", "the state dir"])
def test_icon_path_outside_the_callers_places_answers_like_a_missing_file(where: str, tenants: Tenants) -> None:
    folder = {
        "outside every root": tenants.layout.outside,
        "another user's area": tenants.layout.area(tenants.bob.user_id),
        "the state dir": tenants.stack.state_dir,
    }[where]
    existing = next(p for p in (folder / "icon.png", folder / "jwt-keys.json") if p.exists())
    missing = folder / f"missing-{secrets.token_hex(3)}.png"
    status, answer = _icon(tenants, str(existing))
    assert status == 400, f"an icon {where} was drawn: {str(answer)[:200]}"
    other_status, other = _icon(tenants, str(missing))
    assert other_status == 400, other
    mine, theirs = _same(str(answer["message"]), str(existing), str(other["message"]), str(missing))
    assert mine == theirs, f"icon_path {where}: an existing file answers unlike a missing one"
