"""The supervisor: the trusted half of a driver (session mode and batch mode).

It holds the platform's credentials and is the only engine code that writes the store: it claims
Jobs (conditional transitions only), writes their log chunks, progress, result sets and final
status, heartbeats the session item and enforces the limits. The SparkSession and the user's code
live in a kernel (:mod:`chalicelib.engine.kernel`) that it starts under the user's own uid
(:mod:`chalicelib.engine.sandbox`) and drives over a socket. Everything the kernel says is checked
and only ever applied to the Job the supervisor gave it. A kernel that dies, runs out of memory or
does not stop when told ends its Job Failed/Cancelled with the reason, and a fresh kernel serves
the next Job. No pyspark here.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from chalicelib.config import settings
from chalicelib.engine import config as engine_config
from chalicelib.engine import leftovers, sandbox
from chalicelib.engine.channel import Channel, ChannelClosed
from chalicelib.engine.joblog import JobLog
from chalicelib.job_status import JobStatus
from chalicelib.logformat import closing_line
from chalicelib.records import JobFields, JobRecord, SessionFields
from chalicelib.store import jobs as job_store
from chalicelib.store import results as result_store
from chalicelib.store import sessions as session_store
from chalicelib.timeutil import now_iso

POLL_BUSY_SECONDS = 0.02  # queue poll while recently active, when nobody rings the doorbell (EMR) ...
POLL_BUSY_RUNG_SECONDS = 0.5  # ... and when the runner rings it on every submit (``LocalRunner.wake``)
POLL_IDLE_SECONDS = 0.5  # ... when idle, growing by POLL_BACKOFF per poll ...
POLL_IDLE_MAX_SECONDS = 10.0  # ... up to this (a submitter's wake rings the doorbell at once)
POLL_BACKOFF = 1.5
BUSY_WINDOW_SECONDS = 30.0  # "recently active"
#: Set by SIGUSR1 (the runner's ``wake``, sent after a Job is queued): a waiting driver looks now.
DOORBELL = threading.Event()
_BUSY_POLL = [POLL_BUSY_SECONDS]


def rely_on_doorbell() -> None:
    """The runner rings this driver (SIGUSR1, ``--doorbell``) whenever a Job is queued for it: while
    busy it then polls the queue every ``POLL_BUSY_RUNG_SECONDS``, not every 20 ms (each poll is a
    query the embedded AWS answers under the stack's GIL, beside the requests users wait for)."""
    _BUSY_POLL[0] = POLL_BUSY_RUNG_SECONDS


#: At most this much of a kernel's ``error_detail`` (a failed statement's engine stack) is logged.
ENGINE_STACK_CHARS = 20 * 1024
WATCH_SECONDS = 0.2  # cancel/timeout check and log flush while a job runs
MEMORY_CHECK_SECONDS = 1.0
STOP_GRACE_SECONDS = 7.0  # how long a told-to-stop job may take before its kernel is killed
KERNEL_START_SECONDS = 300.0
PREVIEW_MAX_CHARS = 64_000
MAX_RESULT_SETS = 1000
TAIL_LINES = 40


#: what the kernel's Python side raises when the Spark driver's JVM went away under a call
_LOST_JVM_ERRORS = ("EOFError", "Py4JNetworkError", "Answer from Java side is empty", "ConnectionRefusedError")
#: how long a statement whose JVM went away waits for the JVM's last words in the kernel's output
LOST_JVM_WAIT_SECONDS = 2.0
#: Spark errors that mean the driver had no memory left for a job's results, and what to do about them
_DRIVER_MEMORY_ERRORS = ("TaskResultLost", "result lost from block manager")
DRIVER_MEMORY_HINT = (
    "the Spark driver ran out of memory for the job's results; collect fewer rows to the driver, "
    "or ask for a larger spark.driver.memory"
)


def _explained(error: str) -> str:
    """A kernel's error with the reason first when Spark's own text hides it (results lost for memory)."""
    if any(marker in error for marker in _DRIVER_MEMORY_ERRORS):
        return f"{DRIVER_MEMORY_HINT}\n{error}"
    return error


def lost_driver_reason(error: str, tail: Iterable[str], jvm_running: bool) -> str | None:
    """Why a statement failed when its error is only the broken link to the Spark driver's JVM.

    A JVM that dies mid-statement (``-XX:+ExitOnOutOfMemoryError`` while it collects rows) leaves the
    kernel's Python side with an ``EOFError`` or a py4j network error that says nothing of the cause;
    the JVM's own last words (``Terminating due to java.lang.OutOfMemoryError``) are in the kernel's
    output ``tail``. None when the error is not such a break or the JVM still runs (the user's own
    code raised it)."""
    if not any(marker in error for marker in _LOST_JVM_ERRORS):
        return None
    if any("OutOfMemoryError" in line for line in tail):
        return (
            "the Spark driver ran out of memory (java.lang.OutOfMemoryError) and stopped; "
            "collect fewer rows to the driver, or ask for a larger spark.driver.memory"
        )
    if jvm_running:
        return None
    return "the Spark driver (its JVM) stopped while the statement ran; its session starts again for the next Job"


def max_result_bytes() -> int:
    """Bytes of result pages one Job may store (``SPARKGATE_MAX_RESULT_BYTES``, default 1 GiB)."""
    return sandbox.int_env("SPARKGATE_MAX_RESULT_BYTES", 1 << 30)


def max_log_chars() -> int:
    """Characters of log one Job may store (``SPARKGATE_MAX_LOG_CHARS``, default 32 Mi)."""
    return sandbox.int_env("SPARKGATE_MAX_LOG_CHARS", 32 << 20)


class KernelDied(Exception):
    """The kernel is gone (exited, killed, or its channel broke)."""


def _process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from ``/proc``."""
    return [root, *leftovers.below(root, leftovers.process_table())]


def _rss_bytes(pids: list[int]) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/statm", encoding="ascii") as f:
            total += int(f.read().split()[1]) * page
    return total


class KernelHandle:
    """A running kernel: its channel, its process (or in-process thread), what it printed last."""

    def __init__(self, channel: Channel, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.channel = channel
        self.proc = proc
        self.inbox: queue.Queue[tuple[dict[str, Any], bytes] | None] = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.killed_for: str | None = None
        self.host = socket.gethostname()
        self.pid: int | None = None
        threading.Thread(target=self._read_channel, name="kernel-channel", daemon=True).start()
        if proc is not None and proc.stdout is not None:
            threading.Thread(target=self._read_output, name="kernel-output", daemon=True).start()

    def _read_channel(self) -> None:
        try:
            while True:
                self.inbox.put(self.channel.recv())
        except ChannelClosed:
            self.inbox.put(None)

    def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(line)
            print(f"kernel| {line}", flush=True)

    def send(self, message: dict[str, Any]) -> None:
        """One message to the kernel; :class:`KernelDied` when it is gone."""
        try:
            self.channel.send(message)
        except ChannelClosed as err:
            raise KernelDied(str(err)) from err

    def next(self, timeout: float) -> tuple[dict[str, Any], bytes] | None:
        """The next message, or None when none came within ``timeout``; :class:`KernelDied` at the end."""
        try:
            got = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if got is None:
            self.inbox.put(None)  # every later reader sees the end too
            raise KernelDied(self.death_reason())
        return got

    def wait_for(self, kind: str, timeout: float) -> tuple[dict[str, Any], bytes]:
        """Skip messages until one of ``kind`` (or ``fatal``) arrives."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.next(min(0.5, max(0.0, deadline - time.monotonic())))
            if got is None:
                continue
            if got[0]["t"] == "fatal":
                raise KernelDied(f"the kernel did not start: {got[0].get('error')}")
            if got[0]["t"] == kind:
                return got
        raise KernelDied(f"the kernel did not answer {kind!r} within {timeout:g} s")

    def alive(self) -> bool:
        """Whether the kernel still runs."""
        return self.proc is None or self.proc.poll() is None

    def jvm_running(self) -> bool:
        """Whether a JVM (the Spark driver) runs in the kernel's process tree (True in-process: unknown)."""
        if self.proc is None:
            return True
        for pid in _process_tree(self.proc.pid)[1:]:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/comm", encoding="utf-8") as f:
                if f.read().strip() == "java":
                    return True
        return False

    def memory_bytes(self) -> int:
        """Resident memory of the kernel's whole process tree (0 in-process)."""
        return 0 if self.proc is None else _rss_bytes(_process_tree(self.proc.pid))

    def kill(self, reason: str) -> None:
        """Kill the kernel's process group (its namespace goes with it) and reap it."""
        self.killed_for = self.killed_for or reason
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.channel.close()

    def stop(self) -> None:
        """Ask the kernel to stop Spark and exit; kill it if it does not within a few seconds."""
        with contextlib.suppress(KernelDied):
            self.send({"t": "stop", "stop_spark": self.proc is not None})
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        self.kill("stopped")

    def death_reason(self) -> str:
        """Why the kernel is gone, in words a user can act on."""
        if self.killed_for:
            return self.killed_for
        code = self.proc.poll() if self.proc is not None else None
        if self.proc is not None and code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(3)
        text = "\n".join(self.tail)
        if "OutOfMemoryError" in text:
            return (
                "the Spark driver ran out of memory (java.lang.OutOfMemoryError); "
                "collect fewer rows to the driver, or ask for a larger spark.driver.memory"
            )
        if "insufficient memory for the Java Runtime" in text or "MemoryError" in text:
            return (
                f"the kernel ran out of memory (its quota is {sandbox.limits().memory_mb} MiB, "
                "SPARKGATE_KERNEL_MEMORY_MB); collect fewer rows to the driver"
            )
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (CPU time limit)" if -code == signal.SIGXCPU else ""
            return f"the kernel was killed by {name}{hint}"
        return f"the kernel exited (code {code})"


def start_kernel(
    owner: str,
    config: dict[str, Any],
    app_name: str,
    spark: Any = None,
    *,
    uid: int | None = None,
    warm: bool = False,
) -> KernelHandle:
    """A ready kernel for ``owner``'s jobs: in this process on ``spark`` (tests), else a sandboxed process.

    Isolated kernels run under ``owner``'s kernel uid, or under ``uid`` when given (a warm pool driver's
    fresh uid, see ``chalicelib.pool``); ``warm`` runs a first statement before it answers ready."""
    ours, theirs = socket.socketpair()
    if spark is not None:
        from chalicelib.engine.kernel import Kernel

        kernel_thread = threading.Thread(target=Kernel(Channel(theirs), spark).serve, name="kernel", daemon=True)
        kernel_thread.start()
        handle = KernelHandle(Channel(ours))
    else:
        if uid is None:
            uid = sandbox.owner_uid(owner)
        elif not sandbox.isolated():
            uid = None
        command = sandbox.kernel_command(theirs.fileno(), owner, uid, settings().state_dir)
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=sandbox.kernel_env(owner),
            pass_fds=(theirs.fileno(),),
            cwd=str(sandbox.PROJECT_DIR),
            start_new_session=True,
        )
        theirs.close()
        handle = KernelHandle(Channel(ours), proc)
    try:
        handle.send({"t": "start", "config": config, "app_name": app_name, "warm": warm})
        ready, _ = handle.wait_for("ready", KERNEL_START_SECONDS)
    except KernelDied:
        handle.kill("the kernel did not start")
        raise
    handle.host = str(ready.get("host") or handle.host)
    handle.pid = handle.proc.pid if handle.proc is not None else os.getpid()
    return handle


def replay_catalog(kernel: KernelHandle, ref: dict[str, Any]) -> dict[str, Any]:
    """Load a geo session's catalog (``ref``: user_id, scope, session) into the kernel, oldest first."""
    from chalicelib.store import geo as geo_store

    tables = list(geo_store.catalog(str(ref["user_id"]), str(ref["scope"]), str(ref["session"])))
    kernel.send({"t": "catalog", "tables": tables})
    answer, _ = kernel.wait_for("catalog_done", 600)
    return {"tables": list(answer.get("tables") or []), "failed": list(answer.get("failed") or [])}


# ---- one Job --------------------------------------------------------------------------------------


def _valid_rows(rows: Any) -> bool:
    return isinstance(rows, list) and all(isinstance(r, list) for r in rows)


def _result_set(document: Any) -> dict[str, Any]:
    """A result set the kernel reported, reduced to the fields the store keeps (ValueError if malformed)."""
    if not isinstance(document, dict) or not isinstance(document.get("metadata"), list):
        raise ValueError("malformed result set")
    if not _valid_rows(document.get("rows")):
        raise ValueError("malformed result rows")
    rows = document["rows"]
    return {
        "metadata": [dict(m) for m in document["metadata"] if isinstance(m, dict)],
        "rows": rows,
        "truncated": bool(document.get("truncated")),
        "total_rows": int(document.get("total_rows", len(rows))),
        "page_rows": int(document.get("page_rows", len(rows))),
        "pages": int(document.get("pages", 1)),
        **({"type": "1"} if document.get("type") == "1" else {}),  # a TEXT set (printed output)
    }


def _preview(document: dict[str, Any]) -> dict[str, Any]:
    rows = document["rows"][: engine_config.PREVIEW_ROWS]
    while rows and len(repr(rows)) > PREVIEW_MAX_CHARS:
        rows = rows[: len(rows) // 2]
    total = int(document.get("total_rows", len(document["rows"])))
    return {
        "metadata": document["metadata"],
        "rows": rows,
        "total_rows": total,
        "truncated": bool(document.get("truncated")) or len(rows) < total,
    }


def _progress_info(info: list[dict[str, Any]]) -> list[dict[str, int]]:
    """Per-Spark-job task counts as the kernel reported them, reduced to integers (at most 1,000 jobs)."""
    return [{k: int(v) for k, v in i.items() if isinstance(v, int)} for i in info][:1000]


def _geo_document(result: dict[str, Any]) -> dict[str, Any]:
    import json

    text = json.dumps(result, default=str)
    metadata = [{"columnName": "geo_result", "dataType": "string", "comment": "geo answer (JSON)"}]
    return {"metadata": metadata, "rows": [[text]], "truncated": False}


class JobRun:
    """The supervisor's side of one Job on a kernel: relay, watch, enforce, record."""

    def __init__(self, kernel: KernelHandle, job: JobRecord, max_rows: int) -> None:
        self.kernel, self.job, self.max_rows = kernel, job, max_rows
        self.exec_id, self.owner = str(job["exec_id"]), str(job["owner"])
        self.log = JobLog(self.exec_id, int(job.get("log_lines") or 0), max_chars=max_log_chars())
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store")
        self.stored: list[Future[Any]] = []
        self.result_bytes = 0
        self.progress: tuple[float, list[dict[str, int]]] = (0.0, [])
        self.over_quota: str | None = None

    def run(self) -> JobRecord | None:
        """Run the Job (already Running); answers its final item. Never leaves it Running."""
        try:
            return self._run()
        except BaseException as err:  # the supervisor itself failed or was stopped
            status, reason, code = "Failed", f"engine error: {type(err).__name__}: {err}", engine_config.ERR_ENGINE
            with contextlib.suppress(Exception):
                current = job_store.get_job(self.exec_id)
                if current and current.get("cancel_requested"):
                    status, reason, code = "Cancelled", "cancelled by user", engine_config.ERR_CANCELLED
            self._end(status, reason, code)
            if not isinstance(err, Exception):
                raise
            return None
        finally:
            self.io.shutdown(wait=False)

    def _kernel_job(self) -> dict[str, Any]:
        keys = ("exec_id", "run_type", "code", "scope", "task_id", "geo_op")
        job: Mapping[str, Any] = self.job
        return {k: job[k] for k in keys if k in job}

    def _run(self) -> JobRecord | None:
        job = self.job
        runtime = float(job.get("runtime_seconds") or 0)
        started = time.monotonic()
        self.log.info(
            f"job {job.get('task_id')} ({job['run_type']}) started on {self.kernel.host} kernel pid {self.kernel.pid}"
        )
        try:
            self.kernel.send({"t": "run", "job": self._kernel_job()})
        except KernelDied as err:
            return self._died(str(err))
        stop_reason: str | None = None
        next_watch = started + WATCH_SECONDS
        next_memory = started + MEMORY_CHECK_SECONDS
        while True:
            try:
                got = self.kernel.next(0.02)
            except KernelDied as err:
                return self._died(str(err))
            if got is not None and self._handle(*got):
                return self._finish(got[0], got[1])
            now = time.monotonic()
            if now >= next_watch:
                next_watch = now + WATCH_SECONDS
                self.log.flush()
                if self.over_quota:
                    stop_reason = "Failed"
                elif runtime and now - started > runtime:
                    stop_reason = "Timeout"
                else:
                    current = job_store.get_job(self.exec_id)
                    if current is None or current.get("cancel_requested") or current["status"] != JobStatus.RUNNING:
                        stop_reason = "Cancelled"
                if stop_reason:
                    return self._stop(stop_reason, runtime)
            if now >= next_memory:
                next_memory = now + MEMORY_CHECK_SECONDS
                self._check_memory()

    def _check_memory(self) -> None:
        quota = sandbox.limits().memory_mb
        used = self.kernel.memory_bytes()
        if used > quota * 1024 * 1024:
            self.kernel.kill(
                f"the kernel used {used // (1024 * 1024)} MiB, more than its quota of {quota} MiB "
                "(SPARKGATE_KERNEL_MEMORY_MB)"
            )

    def _handle(self, message: dict[str, Any], blob: bytes) -> bool:
        """Apply one kernel message to this Job; True for its ``done``."""
        if message.get("exec_id") != self.exec_id:
            return False  # not about this Job: ignored
        kind = message["t"]
        if kind == "log":
            for line in message.get("lines") or []:
                if isinstance(line, list) and len(line) == 2 and line[0] in ("INFO", "WARN", "ERROR"):
                    self.log.add(str(line[0]), str(line[1]))
        elif kind == "progress":
            self._progress(message)
        elif kind == "page":
            self._page(message)
        elif kind == "done":
            return True
        return False

    def _progress(self, message: dict[str, Any]) -> None:
        info = message.get("info")
        if not isinstance(info, list) or not all(isinstance(i, dict) for i in info):
            return
        progress = min(max(float(message.get("progress") or 0), 0.0), 0.99)
        clean = _progress_info(info)
        if (progress, clean) != self.progress:
            self.progress = (progress, clean)
            job_store.update_job_fields(self.exec_id, {"progress": progress, "progress_info": clean})

    def _page(self, message: dict[str, Any]) -> None:
        index, page, rows = message.get("index"), message.get("page"), message.get("rows")
        if not (isinstance(index, int) and 0 <= index < MAX_RESULT_SETS and isinstance(page, int) and page >= 1):
            return
        if not isinstance(rows, list) or not _valid_rows(rows) or self.over_quota:
            return
        self.result_bytes += len(repr(rows))
        if self.result_bytes > max_result_bytes():
            self.over_quota = f"the job's results exceed {max_result_bytes()} bytes (SPARKGATE_MAX_RESULT_BYTES)"
            return
        self.stored.append(self.io.submit(result_store.put_result_page, self.owner, self.exec_id, index, page, rows))

    # -- endings ----------------------------------------------------------------------------------

    def _end(
        self, status: str, reason: str, code: int, extra: JobFields | None = None, detail: str = ""
    ) -> JobRecord | None:
        self.log.error(reason) if status != "Cancelled" else self.log.warn(reason)
        if detail:  # the engine's stack, after the clean message (never in the Job's error)
            self.log.error(f"engine stack:\n{detail[:ENGINE_STACK_CHARS]}")
        self.log.info(closing_line(status))  # Linkis's last line, which linkis-cli waits for
        try:
            lines = self.log.flush(update_count=False)
        except Exception:
            lines = self.log.flushed
        fields: JobFields = {"error": reason, "error_code": code, "ended_at": now_iso(), "log_lines": lines}
        fields.update(extra or {})
        return job_store.transition(self.exec_id, (JobStatus.RUNNING,), status, fields)

    def _lost_driver(self, error: str) -> str | None:
        """The reason for a statement that failed because the kernel's JVM went away; the kernel
        (unusable without it) is then killed, so the session's next Job gets a new one."""
        if lost_driver_reason(error, (), False) is None:
            return None
        deadline = time.monotonic() + LOST_JVM_WAIT_SECONDS
        while True:  # a dying JVM may still be exiting, its last line on its way through the kernel's pipe
            running, tail = self.kernel.jvm_running(), list(self.kernel.tail)
            reason = lost_driver_reason(error, tail, running)
            if (reason is not None and not running) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if reason is not None:
            self.kernel.kill(reason)
        return reason

    def _died(self, reason: str) -> JobRecord | None:
        self.kernel.kill(reason)
        return self._end("Failed", f"driver died: {reason}", engine_config.ERR_DRIVER_DIED)

    def _stop(self, status: str, runtime: float) -> JobRecord | None:
        if status == "Timeout":
            reason, code = f"job exceeded its run-time limit of {runtime:g} s", engine_config.ERR_TIMEOUT
        elif status == "Failed":
            reason, code = str(self.over_quota), engine_config.ERR_EXECUTION
        else:
            reason, code = "cancelled by user", engine_config.ERR_CANCELLED
            self.log.warn("kill requested: cancelling the job's Spark jobs")
        with contextlib.suppress(KernelDied):
            self.kernel.send({"t": "cancel", "exec_id": self.exec_id})
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        unwound = False
        try:
            while time.monotonic() < deadline:
                got = self.kernel.next(0.1)
                if got is not None and self._handle(*got):
                    unwound = True
                    break
        except KernelDied:
            pass
        if not unwound:
            self.log.warn("the job's code did not stop in time; its kernel was stopped (session state is lost)")
            self.kernel.kill(f"the kernel did not stop job {self.exec_id} in time")
        return self._end(status, reason, code)

    def _finish(self, done: dict[str, Any], blob: bytes) -> JobRecord | None:
        if done.get("interrupted"):
            current = job_store.get_job(self.exec_id)
            if current and current.get("cancel_requested"):
                return self._end("Cancelled", "cancelled by user", engine_config.ERR_CANCELLED)
        progress, infos = self._final_progress(done)
        if done.get("error") or done.get("interrupted"):
            error = str(done.get("error") or "interrupted")
            lost = self._lost_driver(error)
            text = f"{lost}\n{error}" if lost else _explained(error)
            extra: JobFields = {"progress": progress, "progress_info": infos}
            detail = done.get("error_detail")
            detail = detail if isinstance(detail, str) else ""
            return self._end("Failed", text, engine_config.ERR_EXECUTION, extra, detail)
        try:
            if isinstance(done.get("geo_result"), dict):
                result = dict(done["geo_result"])
                result.pop("png_key", None)
                if blob:
                    result["png_key"] = result_store.put_result_blob(
                        self.owner, self.exec_id, "map.png", blob, "image/png"
                    )
                documents = [_geo_document(result)]
            else:
                documents = [_result_set(d) for d in list(done.get("result_sets") or [])[:MAX_RESULT_SETS]]
        except (TypeError, ValueError) as err:
            return self._end("Failed", f"engine error: the kernel answered {err}", engine_config.ERR_ENGINE)
        for index, document in enumerate(documents):
            if document.get("truncated"):
                self.log.warn(f"result set {index + 1} truncated to {self.max_rows} rows (max_result_rows)")
        self.log.info(f"job {self.job.get('task_id')} succeeded with {len(documents)} result set(s)")
        self.log.info(closing_line("Succeed"))
        # results (S3) and the last log lines (table) are stored side by side; Succeed only after both
        stored = [
            self.io.submit(result_store.put_result_set, self.owner, self.exec_id, i, d) for i, d in enumerate(documents)
        ]
        lines = self.log.flush(update_count=False)
        for future in [*self.stored, *stored]:
            future.result()
        location = f"s3://{settings().bucket_name}/{result_store.result_prefix(self.owner, self.exec_id)}"
        final_info = [{**i, "succeedTasks": i["totalTasks"] - i["failedTasks"], "runningTasks": 0} for i in infos]
        fields: JobFields = {
            "ended_at": now_iso(),
            "log_lines": lines,
            "progress": 1.0,
            "progress_info": final_info,
            "result_sets": len(documents),
            "result_location": location,  # Linkis clients read every Job's location, also one with no files
            "result_preview": _preview(documents[0]) if documents else None,
        }
        return job_store.transition(self.exec_id, (JobStatus.RUNNING,), JobStatus.SUCCEED, fields)

    def _final_progress(self, done: dict[str, Any]) -> tuple[float, list[dict[str, int]]]:
        info = done.get("info")
        if isinstance(info, list) and all(isinstance(i, dict) for i in info):
            clean = _progress_info(info)
            keys = ("id", "succeedTasks", "failedTasks", "runningTasks", "totalTasks")
            if all(all(k in i for k in keys) for i in clean):
                return min(max(float(done.get("progress") or 0), 0.0), 0.99), clean
        return self.progress


# ---- session and batch drivers ---------------------------------------------------------------------


class Heartbeat(threading.Thread):
    """Writes ``heartbeat_at`` into the session item; sets ``superseded`` when the session moved on.

    Every ``every`` seconds, or every ``idle_every`` while :attr:`idle` is set (the driver has had no
    work for a while): each beat writes its interval too, so the monitor knows when to call it stale."""

    def __init__(self, session_id: str, generation: int, every: float, idle_every: float | None = None) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.session_id, self.generation, self.every = session_id, generation, every
        self.idle_every = max(every, idle_every if idle_every is not None else every)
        self.stopping = threading.Event()
        self.superseded = threading.Event()
        self.stop_requested = threading.Event()
        self.idle = threading.Event()

    def interval(self) -> float:
        """Seconds until the next beat."""
        return self.idle_every if self.idle.is_set() else self.every

    def beat(self) -> None:
        """One heartbeat, one request (it also picks up ``stop_requested``)."""
        fields: SessionFields = {"heartbeat_at": time.time(), "heartbeat_every": self.interval()}
        session = session_store.beat_session(self.session_id, self.generation, fields)
        if session is None:
            self.superseded.set()
        elif session.get("stop_requested"):
            self.stop_requested.set()

    def run(self) -> None:
        while not self.stopping.wait(self.interval()):
            try:
                self.beat()
            except Exception as err:  # a transient store error: the next beat retries
                print(f"sparkgate engine: heartbeat failed: {err}", flush=True)


class SessionDriver:
    """Session mode: serve the session's queue on one kernel until idle, stopped or superseded."""

    def __init__(
        self,
        session_id: str,
        generation: int,
        spark: Any = None,
        master: str | None = None,
        kernel: KernelHandle | None = None,
    ) -> None:
        self.session_id, self.generation = session_id, generation
        session = session_store.get_session(session_id)
        if session is None:
            raise SystemExit(f"sparkgate engine: no session {session_id}")
        self.owner = str(session.get("owner") or "")
        self.config = engine_config.session_config(session.get("config"))
        if master:
            self.config["master"] = master
        self.idle_timeout = float(self.config["idle_timeout_seconds"])
        self.max_rows = int(self.config.get("max_result_rows") or engine_config.DEFAULT_MAX_RESULT_ROWS)
        self._spark = spark
        self.heartbeat = Heartbeat(
            session_id,
            generation,
            float(self.config["heartbeat_seconds"]),
            float(self.config.get("heartbeat_idle_seconds") or self.config["heartbeat_seconds"]),
        )
        self.stop = threading.Event()
        self.retired = False
        #: a warm pool driver's kernel, already started (``engine.pool_driver``); else one is started
        self.kernel: KernelHandle | None = kernel
        #: when this driver's first Job ended (None before)
        self.first_job_done: float | None = None

    def _update(self, fields: SessionFields) -> bool:
        ok = session_store.update_session_fields(self.session_id, self.generation, fields)
        if not ok:
            self.heartbeat.superseded.set()
        return ok

    def _should_stop(self) -> bool:
        return self.stop.is_set() or self.heartbeat.superseded.is_set() or self.heartbeat.stop_requested.is_set()

    def _start_kernel(self) -> KernelHandle:
        self.kernel = start_kernel(self.owner, self.config, f"sparkgate-{self.session_id}", self._spark)
        return self.kernel

    def _replay(self, kernel: KernelHandle) -> None:
        """A geo session's tables are temp views: every new kernel loads them before its first Job."""
        ref = self.config.get("geo_catalog")
        if not ref:
            return
        outcome = replay_catalog(kernel, ref)
        for failed in outcome["failed"]:
            print(f"sparkgate engine: table {failed['name']} not replayed: {failed['error']}", flush=True)
        self._update({"catalog_replayed": outcome})

    def serve(self) -> str:
        """Run until done; answers why the driver stopped (idle, stopped, superseded, error)."""
        reason = "error"
        try:
            kernel = self.kernel if self.kernel is not None else self._start_kernel()
            if not self._update({"state": "running", "heartbeat_at": time.time(), "driver_started_at": now_iso()}):
                return "superseded"
            self.heartbeat.start()
            self._replay(kernel)
            reason = self._loop()
            return reason
        finally:
            self.heartbeat.stopping.set()
            if self.kernel is not None:
                self.kernel.stop()
            if not self.retired and not self.heartbeat.superseded.is_set():
                session_store.retire_session(
                    self.session_id,
                    self.generation,
                    {"state": "stopped", "stopped_at": now_iso(), "stop_reason": reason, "current_exec_id": None},
                )

    def _ensure_kernel(self) -> KernelHandle:
        """The live kernel; a dead one (killed, out of memory) is replaced before the next Job."""
        if self.kernel is not None and self.kernel.alive() and self.kernel.killed_for is None:
            return self.kernel
        if self.kernel is not None:
            self.kernel.kill(self.kernel.killed_for or "replaced")
        kernel = self._start_kernel()
        self._replay(kernel)
        return kernel

    def _wait_for_work(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until the doorbell rings (answers True) or the driver is told to stop."""
        deadline = time.monotonic() + seconds
        rung = False
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if DOORBELL.wait(min(left, 0.5)):
                rung = True
                break
        DOORBELL.clear()
        return rung

    def _loop(self) -> str:
        last_active = time.monotonic()
        next_memory = time.monotonic()
        poll = _BUSY_POLL[0]
        while True:
            if self._should_stop():
                return "superseded" if self.heartbeat.superseded.is_set() else "stopped"
            if self._take_one():
                last_active = time.monotonic()
                continue
            if self.kernel is not None and time.monotonic() >= next_memory:
                next_memory = time.monotonic() + MEMORY_CHECK_SECONDS
                used = self.kernel.memory_bytes()
                if used > sandbox.limits().memory_mb * 1024 * 1024:
                    self.kernel.kill("the idle kernel was over its memory quota")
            idle = time.monotonic() - last_active
            if idle >= self.idle_timeout:
                if self._retire_if_idle():
                    return "idle"
                last_active = time.monotonic()
                continue
            if idle < BUSY_WINDOW_SECONDS:
                poll = _BUSY_POLL[0]
                self.heartbeat.idle.clear()
            else:
                poll = min(POLL_IDLE_MAX_SECONDS, max(POLL_IDLE_SECONDS, poll * POLL_BACKOFF))
                self.heartbeat.idle.set()
            if self._wait_for_work(poll) and self.heartbeat.idle.is_set():
                self.heartbeat.beat()  # a stop request rings too: an idle driver hears it now, not at its next beat

    def _take_one(self) -> bool:
        for job in job_store.queued_jobs(self.session_id, limit=5):
            if job["status"] != JobStatus.SCHEDULED:
                continue
            kernel = self._ensure_kernel()
            fields: JobFields = {
                "started_at": now_iso(),
                "driver_generation": self.generation,
                "driver_host": kernel.host,
            }
            try:
                claimed = job_store.claim_for_session(job, self.session_id, self.generation, fields)
            except job_store.Superseded:
                self.heartbeat.superseded.set()
                return False
            if claimed is None:
                continue
            JobRun(kernel, claimed, self.max_rows).run()
            if self.first_job_done is None:  # the stream tops up the warm pool now (``pool.refill_after``)
                self.first_job_done = time.time()
                self._update({"first_job_at": self.first_job_done})
            # current_exec_id keeps naming the finished job until the next claim: the reaper only
            # fails it while Running, so clearing it would be a write per job for nothing
            return True
        return False

    def _retire_if_idle(self) -> bool:
        """Stop when idle, unless a job slipped in while we were deciding (then keep serving)."""
        if not self._update({"state": "stopping"}):
            return False
        if any(j["status"] == JobStatus.SCHEDULED for j in job_store.queued_jobs(self.session_id, limit=5)):
            return not self._update({"state": "running"})
        self.retired = session_store.retire_session(
            self.session_id,
            self.generation,
            {"state": "stopped", "stopped_at": now_iso(), "stop_reason": "idle", "current_exec_id": None},
        )
        return True


def run_batch(exec_id: str, spark: Any = None, master: str | None = None) -> str | None:
    """Batch mode: run job ``exec_id`` on a kernel of its own; answers its final status."""
    driver_id = engine_config.batch_driver_id(exec_id)
    job = job_store.get_job(exec_id)
    if job is None:
        raise SystemExit(f"sparkgate engine: no job {exec_id}")
    config = engine_config.session_config(job.get("session_config"))
    if master:
        config["master"] = master
    record = session_store.get_session(driver_id)
    generation = int(record["generation"]) if record else 1
    heartbeat = Heartbeat(driver_id, generation, float(config["heartbeat_seconds"]))
    status: str | None = None
    kernel: KernelHandle | None = None
    try:
        try:
            kernel = start_kernel(str(job["owner"]), config, f"sparkgate-batch-{exec_id}", spark)
        except KernelDied as err:
            job_store.transition(
                exec_id,
                (JobStatus.SCHEDULED,),
                JobStatus.FAILED,
                {"error": f"driver died: {err}", "error_code": engine_config.ERR_DRIVER_DIED, "ended_at": now_iso()},
            )
            return "Failed"
        session_store.update_session_fields(driver_id, generation, {"state": "running", "heartbeat_at": time.time()})
        heartbeat.start()
        claimed = job_store.transition(
            exec_id,
            (JobStatus.SCHEDULED,),
            JobStatus.RUNNING,
            {"started_at": now_iso(), "driver_generation": generation, "driver_host": kernel.host},
            dequeue=True,
        )
        if claimed is not None:
            max_rows = int(config.get("max_result_rows") or engine_config.DEFAULT_MAX_RESULT_ROWS)
            done = JobRun(kernel, claimed, max_rows).run()
            status = done["status"] if done else None
        return status
    finally:
        heartbeat.stopping.set()
        if kernel is not None:
            kernel.stop()
        session_store.retire_session(driver_id, generation, {"state": "stopped", "stopped_at": now_iso()})


def install_signal_handlers() -> None:
    """SIGTERM ends the driver like Ctrl-C: the running job is failed, the kernel killed, the session retired."""

    def handle(signum: int, frame: object) -> None:
        raise SystemExit(f"sparkgate engine: signal {signum}")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGUSR1, lambda *_: DOORBELL.set())
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
