"""Processes a Job leaves behind, found and ended when the Job ends.

The kernel process is a child subreaper (:func:`become_subreaper`): whatever user code starts, even
a daemon that double-forks into its own session, stays below the kernel, so the kernel's process
tree is exactly the JVM's subtree (kept: Spark's own processes) plus what user code started. At a
Job's end, :func:`sweep` SIGKILLs every process below the kernel that was not there when the Job
began and is not below the JVM, and reaps what it can (no zombie is left under the kernel). Processes
are told apart by pid and start time, so a reused pid is not mistaken for an older process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

_PR_SET_CHILD_SUBREAPER = 36
SWEEP_ROUNDS = 5
REAP_SECONDS = 2.0

#: a process as the sweep knows it: (pid, start time in clock ticks since boot)
Process = tuple[int, int]


def become_subreaper() -> bool:
    """Make this process the reaper of every orphan below it; answers whether the kernel agreed."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, start time, state) of every process /proc shows."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[19]), fields[0])
    return table


def below(root: int, table: dict[int, tuple[int, int, str]]) -> set[int]:
    """Every process strictly below ``root``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def snapshot() -> set[Process]:
    """The processes below this one now (taken when a Job starts)."""
    table = process_table()
    return {(pid, table[pid][1]) for pid in below(os.getpid(), table)}


def _strays(before: set[Process], keep_root: int | None) -> tuple[set[int], dict[int, tuple[int, int, str]]]:
    table = process_table()
    keep = {keep_root, *below(keep_root, table)} if keep_root is not None else set()
    mine = below(os.getpid(), table)
    return {pid for pid in mine - keep if (pid, table[pid][1]) not in before}, table


def sweep(before: set[Process], keep_root: int | None) -> list[int]:
    """End what the Job started: SIGKILL the processes below this one that are not in ``before`` and
    not ``keep_root`` (the JVM) or below it, then reap those that end up as this process's children.
    Answers the pids ended."""
    ended: set[int] = set()
    for _ in range(SWEEP_ROUNDS):  # a process may fork while its siblings are being killed
        strays, table = _strays(before, keep_root)
        alive = {pid for pid in strays if table[pid][2] not in ("Z", "X")}
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        ended |= alive
    deadline = time.monotonic() + REAP_SECONDS
    while time.monotonic() < deadline:
        strays, table = _strays(before, keep_root)
        ours = [pid for pid in strays if table[pid][0] == os.getpid()]
        for pid in ours:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if not strays:
            break
        time.sleep(0.02)
    return sorted(ended)
