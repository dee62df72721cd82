"""The supervisor credential broker (infra/assets/credential_broker.py) over a real Unix socket.

The uid check is the kernel's (``SO_PEERCRED``): as root, a child running under a kernel uid asks
for the credentials and is refused, whatever the allow list says.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from synth_support import INFRA_DIR

BROKER = INFRA_DIR / "assets" / "credential_broker.py"
KERNEL_UID = 200_001


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("credential_broker", BROKER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["credential_broker"] = module
    spec.loader.exec_module(module)
    return module


broker = _load()


class FakeSts:
    """Stands in for ``sts.assume_role``: counts calls, credentials valid for ``lifetime``."""

    def __init__(self, lifetime: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.calls = 0
        self.lifetime = lifetime

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {
            "AccessKeyId": f"ASIA{self.calls:012d}",
            "SecretAccessKey": "secret",
            "SessionToken": "token",
            "Expiration": dt.datetime.now(dt.UTC) + self.lifetime,
        }


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # World-traversable, so a child under another uid reaches the socket and the uid check decides.
    path = Path(tempfile.mkdtemp(prefix="sparkgate-broker-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _serve(socket_dir: Path, allowed: set[int], sts: FakeSts) -> tuple[str, threading.Event]:
    path = str(socket_dir / "supervisor.sock")
    server = broker.listen(path, 0o666)
    stop = threading.Event()
    policy = broker.Policy(frozenset(allowed), broker.DEFAULT_DENY_FROM)
    cache = broker.CachedCredentials(sts)
    threading.Thread(target=broker.serve, args=(server, policy, cache, stop), daemon=True).start()
    return path, stop


def test_the_step_user_gets_credential_process_credentials_cached(
    socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sts = FakeSts()
    path, stop = _serve(socket_dir, {os.getuid()}, sts)
    try:
        for _ in range(2):
            assert broker.main(["fetch", "--socket", path]) == 0
            document = json.loads(capsys.readouterr().out)
            assert document["Version"] == 1
            assert document["AccessKeyId"] == "ASIA000000000001"
            assert {"SecretAccessKey", "SessionToken", "Expiration"} <= set(document)
        assert sts.calls == 1  # cached while valid
    finally:
        stop.set()


def test_credentials_close_to_expiry_are_fetched_again() -> None:
    sts = FakeSts(lifetime=dt.timedelta(minutes=10))
    cache = broker.CachedCredentials(sts)
    cache.get()
    cache.get()
    assert sts.calls == 2


def test_anyone_else_is_refused(socket_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sts = FakeSts()
    path, stop = _serve(socket_dir, {os.getuid() + 4242}, sts)
    try:
        assert broker.main(["fetch", "--socket", path]) == 1
        out, err = capsys.readouterr()
        assert out == "" and "may not have the supervisor's credentials" in err
        assert sts.calls == 0
    finally:
        stop.set()


def test_kernel_uids_are_refused_even_when_listed() -> None:
    policy = broker.Policy(frozenset({1000, KERNEL_UID}), 200_000)
    assert policy.allows(1000)
    assert not policy.allows(KERNEL_UID)
    assert not policy.allows(0)  # root is not the step user either


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child under a kernel uid")
def test_a_process_under_a_kernel_uid_is_refused_by_its_real_uid(socket_dir: Path) -> None:
    sts = FakeSts()
    # Even an allow list naming the kernel uid does not help it.
    path, stop = _serve(socket_dir, {os.getuid(), KERNEL_UID}, sts)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    try:
        got = subprocess.run(
            [python, "-I", str(BROKER), "fetch", "--socket", path],
            user=KERNEL_UID,
            group=KERNEL_UID,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 1, got
        assert got.stdout == ""
        assert f"uid {KERNEL_UID} may not have" in got.stderr
        assert sts.calls == 0
    finally:
        stop.set()
