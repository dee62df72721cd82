"""Users' own files through the real local stack: the presigned URLs ``/api/v1/files`` answers are
checked by the embedded AWS as S3 checks them, so a body of another size or type than declared, or a URL
moved to another user's prefix, is refused; the right body is stored and downloads again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.e2e.stack import StackProcess

BODY = b"select 1 as one\n"


def _upload(stack: StackProcess, token: str, path: str, size: int) -> dict[str, Any]:
    status, body, _ = stack.call(
        "POST", "/api/v1/files", {"path": path, "size": size, "content_type": "text/plain"}, token
    )
    assert status == 201, body
    got: dict[str, Any] = body["data"]
    return got


def test_presigned_urls_are_checked_by_the_embedded_aws(tmp_path: Path) -> None:
    stack = StackProcess(tmp_path / "state")
    stack.start(timeout=120)
    try:
        alice, bob = stack.new_user("alice"), stack.new_user("bob")
        up = _upload(stack, alice, "jobs/a.sql", len(BODY))
        assert up["url"].startswith("http://127.0.0.1:")  # the embedded AWS, on loopback
        text = {"Content-Type": "text/plain"}
        longer = requests.put(up["url"], data=BODY + b"-- and more", headers=text, timeout=30)
        assert longer.status_code == 403, longer.text  # Content-Length is signed
        other_type = requests.put(up["url"], data=BODY, headers={"Content-Type": "text/html"}, timeout=30)
        assert other_type.status_code == 403, other_type.text
        alice_id = up["uri"].split("/")[4]
        bob_id = _upload(stack, bob, "x.sql", 1)["uri"].split("/")[4]
        moved = requests.put(up["url"].replace(alice_id, bob_id), data=BODY, headers=text, timeout=30)
        assert moved.status_code == 403, moved.text
        assert stack.call("GET", "/api/v1/files", None, bob)[1]["data"] == []  # nothing landed in bob's prefix
        stored = requests.put(up["url"], data=BODY, headers=text, timeout=30)
        assert stored.status_code == 200, stored.text
        (entry,) = stack.call("GET", "/api/v1/files", None, alice)[1]["data"]
        assert entry["path"] == "jobs/a.sql" and entry["size"] == len(BODY)
        status, down, _ = stack.call("GET", "/api/v1/files/download?path=jobs/a.sql", None, alice)
        assert status == 200, down
        assert requests.get(down["data"]["url"], timeout=30).content == BODY
        assert stack.call("GET", "/api/v1/files/download?path=jobs/a.sql", None, bob)[0] == 404
        unsigned = requests.get(down["data"]["url"].split("?")[0], timeout=30)
        assert unsigned.status_code == 403  # no signature, no object
    finally:
        stack.stop()
