"""A warm pool driver: a supervisor whose kernel (JVM, SparkSession) starts before anyone asks for it.

``python -m chalicelib.engine pool --pool-id ID`` starts the kernel of pool entry ``ID`` (see
``chalicelib.pool`` for the two kinds and their rules), marks the entry ready and waits, polling
the entry every ``POOL_POLL_SECONDS`` or at once on SIGUSR1 (the runner's ``wake``). When a
session claims it, the driver becomes that session's :class:`~chalicelib.engine.supervisor.SessionDriver`
on the kernel it already has. A fresh kernel first takes on its user: the placeholder area it
started in becomes the user's area (renamed, with a root-owned link left at the old path for the
JVM's temp and warehouse paths), owned by the uid the claim bound to the user. Unclaimed for
``pool_idle_seconds``, it retires itself and exits. No pyspark here.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from chalicelib.config import settings
from chalicelib.engine import config as engine_config
from chalicelib.engine import leftovers, sandbox
from chalicelib.engine.supervisor import DOORBELL, KernelDied, KernelHandle, SessionDriver, start_kernel
from chalicelib.store import pool as pool_store
from chalicelib.user_files import user_area

POOL_POLL_SECONDS = 1.0


#: The nice value a pool driver (and its kernel and JVM, which inherit it) starts at: warming the pool
#: must not take the CPU from the Jobs users wait for. A claim puts the driver's tree back to 0.
POOL_NICE = 10


def _full_priority() -> None:
    """Nice 0 for every thread of this driver and of every process below it (the claimed kernel and
    its JVM: Linux keeps a nice value per thread, and the JVM's pools started at ``POOL_NICE``); needs
    root (or CAP_SYS_NICE), as the local stack's drivers have: without it they stay at ``POOL_NICE``."""
    for pid in (os.getpid(), *leftovers.below(os.getpid(), leftovers.process_table())):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, int(tid), 0)


def placeholder_owner(pool_id: str) -> str:
    """The user id a fresh kernel's area is made under until a user claims it: never a real user id
    (32 hex digits) and never an earlier entry's (whose link stays at its old path, see the module
    docstring), even under a user root an earlier table left behind."""
    return f"pool-{pool_id}"


def _hand_over_area(placeholder: str, owner: str, uid: int | None) -> Path:
    """The fresh kernel's placeholder area becomes ``owner``'s (see the module docstring); answers it."""
    source, target = user_area(placeholder), user_area(owner)
    if not target.exists() and not target.is_symlink():
        os.rename(source, target)
        os.symlink(target, source)
    elif uid is not None:  # the user already has files (uploaded before any kernel ran): they become the uid's
        if target.is_symlink() or not target.is_dir():
            raise OSError(f"{target} is not a folder")
        for folder, dirs, files in os.walk(target):
            for name in [*dirs, *files]:
                os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)
        os.chown(target, uid, uid, follow_symlinks=False)
    return target


class PoolDriver:
    """One warm pool entry's driver: start, wait for a claim, serve the claiming session."""

    def __init__(self, pool_id: str) -> None:
        entry = pool_store.get(pool_id)
        if entry is None:
            raise SystemExit(f"sparkgate engine: no pool entry {pool_id}")
        self.pool_id, self.entry = pool_id, entry
        self.idle_seconds = float(settings().pool_idle_seconds)

    def serve(self) -> str:
        """Run until the entry is retired or its session's driver stops; answers why."""
        if self.entry.get("state") != "starting":
            return "retired"
        kind, owner = self.entry["kind"], self.entry.get("owner")
        uid = sandbox.fresh_uid() if kind == "fresh" else None
        placeholder = placeholder_owner(self.pool_id)
        config = engine_config.session_config(None)
        with contextlib.suppress(OSError):
            os.nice(POOL_NICE)
        try:
            name = f"sparkgate-pool-{self.pool_id}"
            kernel = start_kernel(str(owner or placeholder), config, name, uid=uid, warm=True)
        except KernelDied as err:
            self._retire(f"the kernel did not start: {err}")
            return "error"
        ready = {"state": "ready", "uid": uid, "ready_epoch": time.time(), "host": kernel.host}
        if pool_store.move(self.pool_id, ("starting",), ready) is None:
            kernel.stop()
            return "retired"
        print(f"sparkgate engine: pool {self.pool_id} ready (kernel pid {kernel.pid}, uid {uid})", flush=True)
        claimed = self._wait(kernel)
        if claimed is None:
            kernel.stop()
            return "retired"
        _full_priority()
        try:
            area = str(_hand_over_area(placeholder, str(claimed["claimed_by"]), uid)) if kind == "fresh" else None
            kernel.send({"t": "adopt", "config": self._session_config(claimed), "area": area})
            kernel.wait_for("adopted", 60)
        except (OSError, KernelDied) as err:
            kernel.kill(f"the pooled kernel could not take on its session: {err}")
            print(f"sparkgate engine: pool {self.pool_id} hand-over failed: {err}", flush=True)
        # a dead kernel is replaced by the session driver before its first Job
        driver = SessionDriver(str(claimed["session_id"]), int(claimed["generation"]), kernel=kernel)
        return driver.serve()

    def _session_config(self, claimed: dict[str, Any]) -> dict[str, Any]:
        from chalicelib.store import sessions as session_store

        session = session_store.get_session(str(claimed["session_id"]))
        return engine_config.session_config(session.get("config") if session else None)

    def _wait(self, kernel: KernelHandle) -> dict[str, Any] | None:
        """The entry once claimed; None when retired, unclaimed too long, or the kernel died."""
        since = time.monotonic()
        while True:
            DOORBELL.wait(POOL_POLL_SECONDS)
            DOORBELL.clear()
            entry = pool_store.get(self.pool_id)
            if entry is None or entry.get("state") == "retired":
                return None
            if entry.get("state") == "claimed":
                return entry
            if entry.get("state") != "ready":
                continue  # reserved: a claim is under way
            if not kernel.alive():
                self._retire("the pooled kernel died")
                return None
            if time.monotonic() - since > self.idle_seconds and self._retire("unclaimed"):
                return None

    def _retire(self, reason: str) -> bool:
        fields = {"state": "retired", "stop_reason": reason, "retired_epoch": time.time()}
        return pool_store.move(self.pool_id, ("starting", "ready"), fields) is not None


def serve_pool(pool_id: str) -> str:
    """``python -m chalicelib.engine pool``: serve one pool entry; answers why it stopped."""
    return PoolDriver(pool_id).serve()
