"""sparkgate's supervisor credential broker: the only way to the table on an EMR node.

Installed by ``bootstrap.sh`` on the primary node (where the client-mode drivers run) and run by
systemd as root. ``serve`` listens on a Unix socket; for every connection it reads the peer's uid
from the kernel (``SO_PEERCRED``: the caller cannot forge it) and answers the supervisor role's
temporary credentials only to the allowed step user (``hadoop``), never to a kernel uid (at or above
``--deny-uid-from``, the range the engine runs user code under) and never to anyone else. Root
reaches the instance metadata service, uses the instance role to assume the supervisor role, and
caches the result until 15 minutes before it expires. The instance role's own credentials (which
can assume every user's runtime role) never leave this process.

``fetch`` is the client, in the ``credential_process`` format of the AWS SDKs; the bootstrap
writes ``/etc/sparkgate/aws-config`` with::

    [profile sparkgate-supervisor]
    credential_process = /usr/bin/python3.11 -I /usr/local/libexec/sparkgate/credential_broker.py fetch

Standard library only, except ``boto3`` in ``serve`` (installed by the bootstrap).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pwd
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_SOCKET = "/run/sparkgate/supervisor.sock"
DEFAULT_DENY_FROM = 200_000
REFRESH_BEFORE = dt.timedelta(minutes=15)
MAX_ANSWER = 64 * 1024

Fetcher = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Policy:
    """Who may have the supervisor's credentials."""

    allowed_uids: frozenset[int]
    deny_from: int = DEFAULT_DENY_FROM

    def allows(self, uid: int) -> bool:
        """True only for an allowed uid below the kernel range (a kernel uid is refused even if listed)."""
        return uid in self.allowed_uids and uid < self.deny_from


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket, as the kernel recorded it."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def credential_process_document(credentials: dict[str, Any]) -> dict[str, Any]:
    """STS ``Credentials`` as the ``credential_process`` JSON document (Version 1)."""
    expiration = credentials["Expiration"]
    if isinstance(expiration, dt.datetime):
        expiration = expiration.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Version": 1,
        "AccessKeyId": credentials["AccessKeyId"],
        "SecretAccessKey": credentials["SecretAccessKey"],
        "SessionToken": credentials["SessionToken"],
        "Expiration": str(expiration),
    }


class CachedCredentials:
    """The supervisor role's credentials, fetched again when less than :data:`REFRESH_BEFORE` is left."""

    def __init__(self, fetch: Fetcher) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        """A credential_process document valid for a while yet."""
        with self._lock:
            document = self._document
            if document is not None:
                expires = dt.datetime.strptime(document["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
                if expires - dt.datetime.now(dt.UTC) > REFRESH_BEFORE:
                    return document
            self._document = credential_process_document(self._fetch())
            return self._document


def sts_fetcher(role_arn: str, region: str | None) -> Fetcher:
    """Assume ``role_arn`` with this process's own credentials (root: the instance role, via IMDS)."""
    import boto3  # only the serving side needs it

    sts = boto3.client("sts", region_name=region) if region else boto3.client("sts")
    session_name = f"sparkgate-supervisor-{socket.gethostname()}"[:64]

    def fetch() -> dict[str, Any]:
        got: dict[str, Any] = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name, DurationSeconds=3600)
        return dict(got["Credentials"])

    return fetch


def answer(conn: socket.socket, policy: Policy, credentials: CachedCredentials) -> bool:
    """Answer one connection; True when credentials were handed out."""
    with conn:
        uid = peer_uid(conn)
        if not policy.allows(uid):
            conn.sendall(json.dumps({"error": f"uid {uid} may not have the supervisor's credentials"}).encode())
            return False
        try:
            document = credentials.get()
        except Exception as err:  # report, never crash the broker
            conn.sendall(json.dumps({"error": f"could not get credentials: {type(err).__name__}"}).encode())
            return False
        conn.sendall(json.dumps(document).encode())
        return True


def listen(path: str, mode: int) -> socket.socket:
    """A listening Unix socket at ``path`` (replacing a stale one), with ``mode``."""
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, mode)
    server.listen(16)
    return server


def serve(server: socket.socket, policy: Policy, credentials: CachedCredentials, stop: threading.Event) -> None:
    """Answer connections until ``stop`` is set (one short thread per connection)."""
    server.settimeout(0.5)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:
            if stop.is_set():
                return
            raise
        conn.settimeout(5)
        threading.Thread(target=answer, args=(conn, policy, credentials), daemon=True).start()


def fetch(path: str) -> int:
    """The ``credential_process`` side: print the broker's answer; exit 1 (and say why) on refusal."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(30)
            conn.connect(path)
            chunks = []
            while chunk := conn.recv(4096):
                chunks.append(chunk)
                if sum(len(c) for c in chunks) > MAX_ANSWER:
                    raise ValueError("answer too long")
        document = json.loads(b"".join(chunks) or b"{}")
    except (OSError, ValueError) as err:
        print(f"sparkgate credential broker: {err}", file=sys.stderr)
        return 1
    if not isinstance(document, dict) or "error" in document or document.get("Version") != 1:
        reason = document.get("error") if isinstance(document, dict) else None
        print(f"sparkgate credential broker: {reason or 'not a credential_process answer'}", file=sys.stderr)
        return 1
    print(json.dumps(document))
    return 0


def _uids(users: list[str]) -> frozenset[int]:
    return frozenset(int(u) if u.isdigit() else pwd.getpwnam(u).pw_uid for u in users)


def main(argv: list[str] | None = None) -> int:
    """``serve --role-arn ARN --allow-user hadoop`` (root, systemd) | ``fetch`` (credential_process)."""
    parser = argparse.ArgumentParser(prog="credential_broker.py")
    sub = parser.add_subparsers(dest="mode", required=True)
    served = sub.add_parser("serve")
    served.add_argument("--role-arn", required=True)
    served.add_argument("--allow-user", action="append", required=True, help="user name or uid (repeatable)")
    served.add_argument("--deny-uid-from", type=int, default=DEFAULT_DENY_FROM)
    served.add_argument("--region", default=None)
    served.add_argument("--socket", default=DEFAULT_SOCKET)
    served.add_argument("--socket-mode", type=lambda v: int(v, 8), default=0o666)
    fetched = sub.add_parser("fetch")
    fetched.add_argument("--socket", default=DEFAULT_SOCKET)
    args = parser.parse_args(argv)
    if args.mode == "fetch":
        return fetch(args.socket)
    policy = Policy(_uids(args.allow_user), args.deny_uid_from)
    server = listen(args.socket, args.socket_mode)
    serve(server, policy, CachedCredentials(sts_fetcher(args.role_arn, args.region)), threading.Event())
    return 0


if __name__ == "__main__":
    sys.exit(main())
