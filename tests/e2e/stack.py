"""Start the real local stack (``make run``'s entry point) as a process on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

ADMIN = ("admin", "e2e-admin-password")


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StackProcess:
    """One ``python -m chalicelib.local.stack`` process."""

    def __init__(self, state_dir: Path, extra_env: dict[str, str] | None = None, tree: Path = ROOT) -> None:
        self.state_dir = state_dir
        self.tree = tree  # the checkout whose stack runs (benches compare two)
        self.http_port, self.ws_port = free_port(), free_port()
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def start(self, timeout: float = 60.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
        env.update(
            {
                "SPARKGATE_STATE_DIR": str(self.state_dir),
                "SPARKGATE_HTTP_PORT": str(self.http_port),
                "SPARKGATE_WS_PORT": str(self.ws_port),
                "SPARKGATE_ADMIN_USER": ADMIN[0],
                "SPARKGATE_ADMIN_PASSWORD": ADMIN[1],
                "PYTHONUNBUFFERED": "1",
                **self.extra_env,
            }
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.local.stack"],
            cwd=self.tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError("local stack exited:\n" + "".join(self.output))
            self.output.append(line)
            if "sparkgate: ready" in line:
                import threading

                threading.Thread(target=self._drain, daemon=True).start()
                return
        raise RuntimeError("local stack did not become ready:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as a user would; answers the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    @contextlib.contextmanager
    def aws(self) -> Iterator[None]:
        """This process's boto3 points at the stack's embedded AWS, with its platform credential, inside."""
        from chalicelib.local.credentials import local_stack_environment
        from chalicelib.store import aws

        wanted = local_stack_environment(self.state_dir)
        saved = {name: os.environ.get(name) for name in wanted}
        os.environ.update(wanted)
        aws.reset()
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            aws.reset()

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """One HTTP request over a real socket; JSON in and out."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Token {token}")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None, dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None, dict(err.headers)

    def login(self, username: str = ADMIN[0], password: str = ADMIN[1]) -> str:
        status, body, _ = self.call("POST", "/token", {"username": username, "password": password})
        assert status == 200, body
        token: str = body["data"]["token"]
        return token

    def new_user(self, username: str, password: str | None = None) -> str:
        """Create a user through the admin route; answers the user's token."""
        password = password or f"{username}-password"
        status, body, _ = self.call("POST", "/api/v1/users", {"username": username, "password": password}, self.login())
        assert status == 201, body
        return self.login(username, password)
