"""The local stack's own defences, on the real ``LocalStack`` (in this process, over loopback sockets).

- every HTTP request runs with its own token and body, however many threads serve at once
  (issue 13: a shared ``app.current_request`` answered 11 of 480 reads as the other user);
- the embedded AWS and the ``@connections`` API refuse what is not signed with the platform
  credential, and the platform's own calls (writes, snapshots, pushes) still work;
- the state dir is 0700 and its files 0600, loose modes left by an older stack are tightened;
- the children the stack starts inherit the platform credential, never the admin password.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.sync.client import connect

from chalicelib.local.stack import LocalStack

ADMIN = ("admin", "isolation-admin-password")
# what the stack sets in os.environ (undone after the module)
_TOUCHED = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "SPARKGATE_STAGE",
    "SPARKGATE_STATE_DIR",
    "SPARKGATE_WS_ENDPOINT",
    "SPARKGATE_ADMIN_USER",
    "SPARKGATE_ADMIN_PASSWORD",
    "SPARKGATE_TABLE",
    "SPARKGATE_BUCKET",
    "SPARKGATE_RUNNER",
    "SPARKGATE_SCHEDULE_SECONDS",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_METRICS_NAMESPACE",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("isolation") / "state"
    # an older stack's state dir: world-readable folder and files
    (state / "aws" / "s3" / "results").mkdir(parents=True)
    os.chmod(state, 0o755)
    os.chmod(state / "aws", 0o755)
    (state / "jwt-keys.json").write_text(json.dumps({"current": "k1", "keys": {"k1": "ab" * 64}}))
    (state / "aws" / "table.jsonl").write_text("")
    (state / "aws" / "s3" / "results" / "old.csv").write_text("a,b\n")
    for path in (state / "jwt-keys.json", state / "aws" / "table.jsonl", state / "aws" / "s3" / "results" / "old.csv"):
        os.chmod(path, 0o644)
    outside = state.parent / "outside.txt"
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    (state / "link").symlink_to(outside)

    saved = {name: os.environ.get(name) for name in _TOUCHED}
    os.environ.update(
        {
            "SPARKGATE_ADMIN_USER": ADMIN[0],
            "SPARKGATE_ADMIN_PASSWORD": ADMIN[1],
            "SPARKGATE_SCHEDULE_SECONDS": "3600",
            "AWS_SESSION_TOKEN": "a-real-session-token",
        }
    )
    from chalicelib.store import aws, wsapi
    from chalicelib.store.keys import forget_cached_keys

    aws.reset()
    wsapi.reset()
    forget_cached_keys()
    local = LocalStack("127.0.0.1", 0, 0, state)
    try:
        local.start()
        yield local
    finally:
        try:
            local.stop()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            aws.reset()
            wsapi.reset()
            forget_cached_keys()
            boto3.DEFAULT_SESSION = None


class Http:
    """One keep-alive connection to the stack's HTTP port (one per thread, as a browser tab would)."""

    def __init__(self, stack: LocalStack) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=30)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self.conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()


def _login(stack: LocalStack, username: str, password: str) -> str:
    client = Http(stack)
    try:
        status, body = client.call("POST", "/token", {"username": username, "password": password})
        assert status == 200, body
        return str(body["data"]["token"])
    finally:
        client.close()


@pytest.fixture(scope="module")
def users(stack: LocalStack) -> dict[str, str]:
    admin = _login(stack, *ADMIN)
    client = Http(stack)
    try:
        for name in ("alice", "bob"):
            status, body = client.call(
                "POST", "/api/v1/users", {"username": name, "password": f"{name}-pw-1234"}, admin
            )
            assert status == 201, body
    finally:
        client.close()
    return {name: _login(stack, name, f"{name}-pw-1234") for name in ("alice", "bob")}


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---- requests never run as another request --------------------------------------------------


def test_concurrent_users_only_ever_get_their_own_answers(stack: LocalStack, users: dict[str, str]) -> None:
    """Two users x 6 threads, each reading its own works and creating new ones, all at once."""
    threads_per_user, rounds = 6, 40
    own: dict[str, list[str]] = {}
    setup = Http(stack)
    try:
        for user, token in users.items():
            own[user] = []
            for i in range(threads_per_user):
                status, body = setup.call(
                    "POST",
                    "/api/v1/works",
                    {"name": f"{user}-work-{i}", "description": user, "type": "BATCH", "category": "SPARK_SQL"},
                    token,
                )
                assert status == 201, body
                own[user].append(body["data"]["work_id"])
    finally:
        setup.close()

    wrong: list[str] = []
    answers = [0]
    lock = threading.Lock()
    start = threading.Barrier(threads_per_user * len(users))

    def hammer(user: str, index: int) -> None:
        token, work_id = users[user], own[user][index]
        client = Http(stack)
        start.wait()
        try:
            for n in range(rounds):
                if n % 8 == 7:  # a write: its body is the caller's, and so is the answer
                    name = f"{user}-t{index}-n{n}"
                    body = {"name": name, "description": user, "type": "BATCH", "category": "SPARK_SQL"}
                    status, got = client.call("POST", "/api/v1/works", body, token)
                    ok = status == 201 and got["data"]["name"] == name and got["data"]["description"] == user
                else:
                    status, got = client.call("GET", f"/api/v1/works/{work_id}", token=token)
                    ok = status == 200 and got["data"]["work_id"] == work_id and got["data"]["description"] == user
                with lock:
                    answers[0] += 1
                    if not ok:
                        wrong.append(f"{user}#{index} round {n}: {status} {json.dumps(got)[:200]}")
        finally:
            client.close()

    workers = [threading.Thread(target=hammer, args=(user, i)) for user in users for i in range(threads_per_user)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    assert answers[0] == threads_per_user * len(users) * rounds
    assert not wrong, f"{len(wrong)} of {answers[0]} answers were not the caller's: {wrong[:5]}"


# ---- the embedded AWS ------------------------------------------------------------------------


def _client(stack: LocalStack, service: str, key_id: str, secret: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_the_embedded_aws_refuses_anything_but_the_platform_credential(
    stack: LocalStack, users: dict[str, str]
) -> None:
    from chalicelib.config import settings
    from chalicelib.store import aws

    table = settings().table_name
    count = aws.client("dynamodb").scan(TableName=table, Select="COUNT", ConsistentRead=True)["Count"]
    assert count > 0  # the platform's own calls work
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    scan = urllib.request.Request(
        endpoint + "/",
        data=json.dumps({"TableName": table}).encode(),
        headers={"X-Amz-Target": "DynamoDB_20120810.Scan", "Content-Type": "application/x-amz-json-1.0"},
    )
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(scan, timeout=10)
    assert unsigned.value.code == 403
    assert "MissingAuthenticationTokenException" in unsigned.value.read().decode()

    key_id = stack.credentials.access_key_id
    for creds in (("AKIAAAAAAAAAAAAAAAAA", "x" * 40), (key_id, "guessed-secret")):
        with pytest.raises(ClientError) as refused:
            _client(stack, "dynamodb", *creds).update_item(
                TableName=table,
                Key={"pk": {"S": "USER#x"}, "sk": {"S": "USER"}},
                UpdateExpression="SET is_admin = :t",
                ExpressionAttributeValues={":t": {"BOOL": True}},
            )
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    after = aws.client("dynamodb").scan(TableName=table, Select="COUNT", ConsistentRead=True)["Count"]
    assert after == count


def test_the_credential_reaches_children_and_operator_tools_but_the_admin_password_does_not(
    stack: LocalStack,
) -> None:
    from chalicelib.local.credentials import local_stack_environment

    assert "SPARKGATE_ADMIN_PASSWORD" not in os.environ
    assert "AWS_SESSION_TOKEN" not in os.environ
    assert os.environ["AWS_ACCESS_KEY_ID"] == stack.credentials.access_key_id
    env = local_stack_environment(stack.state_dir)
    assert env["AWS_SECRET_ACCESS_KEY"] == stack.credentials.secret_access_key
    assert env["AWS_ENDPOINT_URL"] == os.environ["AWS_ENDPOINT_URL"]
    from chalicelib.runners.local import LocalRunner

    names = ("AWS_ACCESS_KEY_ID", "SPARKGATE_ADMIN_PASSWORD")
    probe = f"import os, json; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    handle = LocalRunner().spawn([sys.executable, "-c", probe], "env-probe")
    deadline = time.monotonic() + 30
    log = Path(handle["log_path"])
    while time.monotonic() < deadline and not log.read_text().strip():
        time.sleep(0.05)
    seen = json.loads(log.read_text().strip().splitlines()[-1])
    assert seen == {"AWS_ACCESS_KEY_ID": stack.credentials.access_key_id, "SPARKGATE_ADMIN_PASSWORD": None}
    # and an operator tool of the same uid finds the running stack through the state dir
    tool_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    tool_env.update({"SPARKGATE_STATE_DIR": str(stack.state_dir), "SPARKGATE_NEW_PASSWORD": "carol-pw-1234"})
    made = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "create-user", "--username", "carol"],
        env=tool_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["username"] == "carol"


# ---- @connections ----------------------------------------------------------------------------


def test_connections_refuses_forged_pushes_and_delivers_the_platforms(stack: LocalStack, users: dict[str, str]) -> None:
    from chalicelib.store import wsapi

    with connect(f"{stack.ws_url}/?token={users['alice']}") as ws:
        deadline = time.monotonic() + 10
        while not stack.gateway.connection_ids and time.monotonic() < deadline:
            time.sleep(0.02)
        (connection_id,) = stack.gateway.connection_ids
        forged = urllib.request.Request(
            f"{stack.ws_endpoint}/@connections/{connection_id}", data=b'{"message": "log"}', method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=10)
        assert refused.value.code == 403 and refused.value.headers["x-amzn-ErrorType"] == "ForbiddenException"
        with pytest.raises(ClientError) as wrong:
            boto3.client(  # type: ignore[call-overload]
                "apigatewaymanagementapi",
                endpoint_url=stack.ws_endpoint,
                region_name="us-east-1",
                aws_access_key_id=stack.credentials.access_key_id,
                aws_secret_access_key="guessed",
            ).post_to_connection(ConnectionId=connection_id, Data=b"forged")
        assert wrong.value.response["Error"]["Code"] == "ForbiddenException"
        assert wsapi.post(connection_id, b'{"genuine": 1}') is True  # the platform's own push
        assert ws.recv(timeout=10) == '{"genuine": 1}'
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)


# ---- the state dir ---------------------------------------------------------------------------


def test_the_state_dir_is_out_of_other_uids_reach(stack: LocalStack, users: dict[str, str]) -> None:
    state = stack.state_dir
    stack.snapshots.save()
    assert _mode(state) == 0o700
    for name in ("aws-credentials", "aws-endpoint", "ws-url", "jwt-keys.json"):
        assert _mode(state / name) == 0o600, name
    assert _mode(state / "aws") == 0o700 and _mode(state / "drivers") == 0o700
    assert _mode(state / "aws" / "table.jsonl") == 0o600
    assert _mode(state / "aws" / "s3" / "results" / "old.csv") == 0o600
    for path in state.rglob("*"):
        if not path.is_symlink():
            assert not _mode(path) & 0o077 or path.parent.name == "drivers", path
    assert _mode(state.parent / "outside.txt") == 0o644  # a symlink's target is never touched


def test_new_snapshot_files_are_private(stack: LocalStack, users: dict[str, str]) -> None:
    from chalicelib.config import settings
    from chalicelib.store import aws

    aws.client("s3").put_object(Bucket=settings().bucket_name, Key="results/new/deep/part-0.csv", Body=b"1\n")
    stack.snapshots.save()
    root = stack.state_dir / "aws" / "s3"
    assert _mode(root / "results" / "new") == 0o700 and _mode(root / "results" / "new" / "deep") == 0o700
    assert _mode(root / "results" / "new" / "deep" / "part-0.csv") == 0o600


def test_the_banner_names_the_isolation_mode(stack: LocalStack) -> None:
    (line,) = [line for line in stack.banner_lines() if line.startswith("sparkgate: isolation: ")]
    assert len(line) > len("sparkgate: isolation: ")
