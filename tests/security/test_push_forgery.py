"""Push frames cannot be forged: neither user code (posting to every ``@connections`` endpoint it can
find, unsigned or signed with whatever credential it holds or guesses) nor anyone on loopback without
the platform credential gets a frame onto another user's WebSocket. Bob's socket is watched for the
forged frame; a control frame (his own malformed request, answered through ``@connections``) proves
the socket was listening."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import connect

from tests.security.conftest import DISCOVER, REGION, Tenants, wait_until, ws_endpoint

FORGE_PROBE = (
    DISCOVER
    + r"""
import json, os, urllib.error, urllib.request
endpoints, ports = http_endpoints("SPARKGATE_WS_ENDPOINT")
frame = json.dumps({
    "method": "/api/rest_j/v1/entrance/%s/log" % P["exec"], "status": 0, "message": "log",
    "data": {"execID": P["exec"], "taskID": 1, "log": ["", "", P["marker"], P["marker"]], "fromLine": 999999},
    "websocketTag": None,
}).encode()


def post(url):
    request = urllib.request.Request(url, data=frame, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        raise RuntimeError("HTTP %d" % err.code)


creds = [("testing", "testing")]
if os.environ.get("AWS_ACCESS_KEY_ID"):
    creds.insert(0, (os.environ["AWS_ACCESS_KEY_ID"], os.environ.get("AWS_SECRET_ACCESS_KEY", "")))
attempts = []
for endpoint in endpoints:
    for conn in P["conns"]:
        for path in ("/@connections/" + conn, "/local/@connections/" + conn):
            attempts.append({"url": endpoint + path, "signed": "no", **attempt("post", lambda: post(endpoint + path))})
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            continue
        for key_id, secret in creds:
            client = boto3.client(
                "apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id=key_id, aws_secret_access_key=secret,
                config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}),
            )
            posted = attempt("boto3", lambda: client.post_to_connection(ConnectionId=conn, Data=frame) and 200)
            attempts.append({"url": endpoint, "signed": key_id[:4], **posted})
report({"endpoints": endpoints, "attempts": attempts})
"""
)


def _is_error_answer(text: str) -> bool:
    try:
        frame = json.loads(text)
    except ValueError:
        return False
    return isinstance(frame, dict) and frame.get("status") == 1


def _watch_bobs_socket(tenants: Tenants, action: Callable[[list[str]], Any]) -> tuple[list[str], bool, Any]:
    """Bob connects; ``action(bob's connection ids)`` runs; bob sends a malformed frame (the control:
    its error answer comes back through ``@connections``) and every frame he receives is collected."""
    bob, platform = tenants.bob, tenants.platform

    async def run() -> tuple[list[str], bool, Any]:
        async with connect(f"{tenants.stack.ws_url}/?token={bob.token}") as sock:
            conns: list[str] = []

            def recorded() -> bool:
                conns[:] = platform.connection_ids(bob.user_id)
                return bool(conns)

            assert await asyncio.to_thread(wait_until, recorded, 10), "bob's connection was not recorded"
            result = await asyncio.to_thread(action, list(conns))
            await sock.send("this is not json")
            frames: list[str] = []
            answered = False
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    raw = await asyncio.wait_for(sock.recv(), max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                text = raw if isinstance(raw, str) else raw.decode(errors="replace")
                frames.append(text)
                if not answered and _is_error_answer(text):
                    answered = True
                    deadline = time.monotonic() + 1.0  # anything forged would have come before; a little more
            return frames, answered, result

    return asyncio.run(run())


def test_user_code_cannot_push_a_frame_to_another_users_socket(tenants: Tenants) -> None:
    marker = f"FORGED-PUSH-{secrets.token_hex(6)}"

    def forge(conns: list[str]) -> dict[str, Any]:
        params = {"conns": conns, "marker": marker, "exec": tenants.bob_warmup.exec_id}
        return tenants.alice.probe(FORGE_PROBE, params, timeout=180)[0]

    frames, answered, rep = _watch_bobs_socket(tenants, forge)
    assert answered, f"the control frame never came back: {frames}"
    forged = [f for f in frames if marker in f]
    assert forged == [], f"bob's socket received a frame forged by alice's code ({len(forged)}); tried {rep}"


def _request(method: str, url: str, body: bytes | None, credential: tuple[str, str] | None) -> urllib.request.Request:
    headers = {"Content-Type": "application/json"}
    if credential is not None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        signed = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
        SigV4Auth(Credentials(*credential), "execute-api", REGION).add_auth(signed)
        headers = dict(signed.headers.items())
    return urllib.request.Request(url, data=body, method=method, headers=headers)


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_connections_api_refuses_requests_without_the_platform_credential(tenants: Tenants) -> None:
    endpoint = ws_endpoint(tenants.stack)
    key_id, secret = tenants.platform.credential
    marker = f"FORGED-HTTP-{secrets.token_hex(6)}"
    control = f"CONTROL-{secrets.token_hex(6)}"
    forged = json.dumps({"method": "/api/rest_j/v1/entrance/x/log", "status": 0, "data": {"log": [marker]}}).encode()
    tries = {
        "unsigned POST": ("POST", forged, None),
        "POST signed with a wrong secret": ("POST", forged, (key_id, secret + "x")),
        "POST signed with another key": (
            "POST",
            forged,
            ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ),
        "unsigned GET": ("GET", None, None),
        "unsigned DELETE": ("DELETE", None, None),
    }

    def attack(conns: list[str]) -> tuple[dict[str, set[int]], set[int]]:
        statuses: dict[str, set[int]] = {name: set() for name in tries}
        controls: set[int] = set()
        for conn in conns:
            url = f"{endpoint}/@connections/{conn}"
            for name, (method, body, cred) in tries.items():
                statuses[name].add(_status(_request(method, url, body, cred)))
            # the platform's own, correctly signed post still works (so the refusals are the check's doing)
            frame = json.dumps({"method": "/control", "status": 0, "data": {"control": control}}).encode()
            controls.add(_status(_request("POST", url, frame, (key_id, secret))))
        return statuses, controls

    frames, answered, (statuses, controls) = _watch_bobs_socket(tenants, attack)
    assert answered, f"the control frame never came back: {frames}"
    assert [f for f in frames if marker in f] == [], "a forged frame reached bob's socket"
    assert 200 in controls and any(control in f for f in frames), (controls, frames)
    assert statuses == {name: {403} for name in tries}, statuses
