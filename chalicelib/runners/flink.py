"""FLINK_SQL and FLINK_JAR works on the local runner: a sandboxed local Flink, supervised from here.

``python -m chalicelib.runners.jar --exec-id ID`` (the artefact supervisor, root, holds the platform
credential) calls :func:`supervise` for a Flink run once its Job is Running. The Flink side runs in a
sandboxed process exactly like an engine kernel (:mod:`chalicelib.engine.sandbox`: the owner's own
uid, PID/mount/network namespaces, rlimits, an allow-listed environment without credentials):
``python -I -u chalicelib/runners/flink_main.py <kernel arguments> -- --fd N --artefact-fd M``, which
runs :mod:`chalicelib.runners.flink_kernel`. It gets its work over a socket (:class:`Channel`): the
SQL text (variables substituted, from the artefact the supervisor read) or the jar (an inherited,
already open file: the sandboxed uid need not be able to open the path). It answers with result sets
and a ``done``; its stdout/stderr (statements, Flink's warnings, the jar's output) become the Job's log.

Flink itself is the one PyPI's ``apache-flink`` / ``apache-flink-libraries`` install (``pyflink/``
holds ``lib/flink-dist-*.jar`` and ``bin/``), unless ``SPARKGATE_FLINK_HOME`` names another
installation. Jobs run on a local mini-cluster inside the sandbox (``execution.target: local``), so
a cancel stops the process and no state survives it (no savepoint is taken; see docs/tasks.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from chalicelib.config import settings
from chalicelib.engine import sandbox
from chalicelib.engine.channel import Channel, ChannelClosed
from chalicelib.engine.config import PREVIEW_ROWS, session_config
from chalicelib.logformat import closing_line
from chalicelib.records import JobFields, JobRecord
from chalicelib.runners.base import RunnerError

FLINK_MAIN = sandbox.PROJECT_DIR / "chalicelib" / "runners" / "flink_main.py"
LOG4J_PROPERTIES = sandbox.PROJECT_DIR / "chalicelib" / "runners" / "flink-log4j.properties"
#: Flink 2.x runs on these Java versions only.
SUPPORTED_JAVA = (11, 17, 21)
MAX_RESULT_SETS = 1000
#: what each result message counts against SPARKGATE_MAX_RESULT_BYTES beyond its rows (an object written)
MESSAGE_BYTES = 256
TAIL_LINES = 20
STOP_GRACE_SECONDS = 10.0
ERR_FLINK = 21304


def packaged_home() -> Path | None:
    """The Flink that ``pip install apache-flink`` brings: the ``pyflink`` package folder (found, not imported)."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.origin:
        return None
    home = Path(spec.origin).parent
    return home if any((home / "lib").glob("flink-dist-*.jar")) else None


def flink_home() -> Path | None:
    """The local Flink installation: ``SPARKGATE_FLINK_HOME``, else the packaged one, else None."""
    raw = os.environ.get("SPARKGATE_FLINK_HOME")
    return Path(raw).resolve() if raw else packaged_home()


def check_java() -> None:
    """Flink 2.x needs Java 11, 17 or 21: :class:`RunnerError` naming what this machine has otherwise."""
    from chalicelib.runners.jar import local_java_major

    major = local_java_major()
    if major not in SUPPORTED_JAVA:
        found = f"Java {major}" if major else "no Java"
        raise RunnerError(f"Flink 2.x runs on Java 11, 17 or 21; this machine has {found} (set JAVA_HOME)")


def run_tmp(owner: str, exec_id: str) -> Path:
    """The run's own temp folder in the owner's area (made by the sandboxed side, removed after the run)."""
    return Path(sandbox.kernel_env(owner)["TMPDIR"]) / f"flink-{exec_id}"


def flink_env(owner: str, home: Path, exec_id: str) -> dict[str, str]:
    """The sandboxed process's environment: a kernel's (no credentials) plus where Flink and its files go."""
    env = sandbox.kernel_env(owner)
    tmp = str(run_tmp(owner, exec_id))
    heap = sandbox.limits().jvm_heap_mb
    env.update(
        {
            "TMPDIR": tmp,
            "FLINK_HOME": str(home),
            "FLINK_CONF_DIR": str(home / "conf"),
            "FLINK_LOG_DIR": tmp,
            "LOG4J_PROPERTIES": str(LOG4J_PROPERTIES),
            # Java ignores TMPDIR: Flink's blob store, its unpacked planner (~70 MB) and spill files go
            # to the run's own folder, which is removed when the run ends (a killed JVM cleans nothing)
            "JVM_ARGS": f"-Xmx{heap}m -Xss1m -Djava.io.tmpdir={tmp}",
            # PyFlink's Python-UDF worker (Apache Beam) is not installed: SQL runs in the JVM only.
            "_python_worker_execution_mode": "process",
        }
    )
    return env


def flink_command(fd: int, artefact_fd: int | None, owner: str, uid: int | None) -> list[str]:
    """The sandboxed command line: a kernel's arguments with ``flink_main.py`` as the entry."""
    command = sandbox.kernel_command(fd, owner, uid, settings().state_dir, main=FLINK_MAIN)
    command += ["--", "--fd", str(fd)]
    if artefact_fd is not None:
        command += ["--artefact-fd", str(artefact_fd)]
    return command


def _spec(job: JobRecord) -> tuple[dict[str, Any], IO[bytes] | None]:
    """What the sandboxed side is told to run, and the jar (an open file) for FLINK_JAR."""
    from chalicelib import work_runs

    run: dict[str, Any] = job["artefact_run"]
    args = [str(a) for a in run.get("args") or []]
    artefact = work_runs.run_artefact(run)
    mode = "STREAMING" if str(run.get("type") or "").upper() == "STREAMING" else "BATCH"
    spec: dict[str, Any] = {"t": "start", "exec_id": job["exec_id"], "type": mode, "args": args}
    if run.get("sql"):
        spec.update({"mode": "sql", "sql": work_runs.substitute_sql(work_runs.read_text(artefact), args)})
        spec["max_rows"] = int(session_config(job.get("session_config")).get("max_result_rows") or 1)
        return spec, None
    from chalicelib.runners.emr import check_java_class

    # a class name, never a JVM option (java would take "-XX:OnError=..." as one, and the next argument as main)
    spec.update({"mode": "jar", "main_class": check_java_class(run.get("main_class"))})
    return spec, work_runs.open_jar(artefact)


class _Results:
    """Result sets the sandboxed side reports, checked and bounded before anything is stored."""

    def __init__(self, owner: str, exec_id: str) -> None:
        self.owner, self.exec_id = owner, exec_id
        self.documents: dict[int, dict[str, Any]] = {}
        self.bytes = 0
        self.limit = sandbox.int_env("SPARKGATE_MAX_RESULT_BYTES", 1 << 30)
        self.over: str | None = None

    def _rows(self, rows: Any, extra: Any = None) -> list[list[Any]] | None:
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            return None
        # every stored object costs at least MESSAGE_BYTES, and a document's metadata counts too: the
        # sandboxed side (the user's uid) cannot make root hold or write more than the budget
        self.bytes += MESSAGE_BYTES + len(json.dumps(rows, default=str)) + len(json.dumps(extra, default=str))
        if self.bytes > self.limit:
            self.over = f"the job's results exceed {self.limit} bytes (SPARKGATE_MAX_RESULT_BYTES)"
            return None
        return rows

    def page(self, message: dict[str, Any]) -> None:
        """Page >= 1 of a result set: stored at once."""
        from chalicelib.store import results as result_store

        index, number = message.get("index"), message.get("page")
        if not (isinstance(index, int) and 0 <= index < MAX_RESULT_SETS and isinstance(number, int) and number >= 1):
            return
        rows = self._rows(message.get("rows"))
        if rows is not None:
            result_store.put_result_page(self.owner, self.exec_id, index, number, rows)

    def result(self, message: dict[str, Any]) -> None:
        """A result set's document (page 0 and its counts)."""
        index, metadata = message.get("index"), message.get("metadata")
        if not (isinstance(index, int) and 0 <= index < MAX_RESULT_SETS and isinstance(metadata, list)):
            return
        rows = self._rows(message.get("rows"), metadata)
        if rows is None:
            return
        self.documents[index] = {
            "metadata": [
                {"columnName": str(m.get("columnName")), "dataType": str(m.get("dataType")), "comment": ""}
                for m in metadata
                if isinstance(m, dict)
            ],
            "rows": rows,
            "truncated": bool(message.get("truncated")),
            "total_rows": int(message.get("total_rows") or len(rows)),
            "page_rows": int(message.get("page_rows") or len(rows)),
            "pages": int(message.get("pages") or 1),
        }

    def store(self) -> JobFields:
        """Write the result sets; the Job fields that describe them."""
        from chalicelib.store import results as result_store

        documents = [self.documents[i] for i in sorted(self.documents)]
        for index, document in enumerate(documents):
            result_store.put_result_set(self.owner, self.exec_id, index, document)
        preview = None
        if documents:
            first = documents[0]
            rows = first["rows"][:PREVIEW_ROWS]
            total = first["total_rows"]
            preview = {"metadata": first["metadata"], "rows": rows, "total_rows": total}
            preview["truncated"] = first["truncated"] or len(rows) < total
        location = f"s3://{settings().bucket_name}/{result_store.result_prefix(self.owner, self.exec_id)}"
        return {"result_sets": len(documents), "result_location": location, "result_preview": preview}


class _Log:
    """The Job's log, appended in order from the output reader and the supervisor itself."""

    def __init__(self, exec_id: str) -> None:
        self.exec_id = exec_id
        self.pending: list[tuple[str, str]] = []
        self.written = 0
        self.tail: list[str] = []
        self.lock = threading.Lock()

    def add(self, level: str, text: str) -> None:
        with self.lock:
            self.pending.append((level, text))
            self.tail = [*self.tail[-(TAIL_LINES - 1) :], text]

    def flush(self) -> int:
        from chalicelib.store import jobs as job_store
        from chalicelib.store import logs as log_store

        with self.lock:
            chunk, self.pending = self.pending, []
        if chunk:
            if log_store.append_log(self.exec_id, self.written, chunk):
                self.written += len(chunk)
                job_store.update_job_fields(self.exec_id, {"log_lines": self.written})
            else:  # another writer took those lines: retry them after the next read
                with self.lock:
                    self.pending = chunk + self.pending
        return self.written


def remove_run_folder(folder: Path) -> None:
    """Remove a run's temp folder (in the owner's area: a symlink in its place is left alone, and
    ``rmtree`` follows none inside it)."""
    with contextlib.suppress(OSError):
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def _end(exec_id: str, log: _Log, status: str, fields: JobFields) -> None:
    from chalicelib.store import jobs as job_store
    from chalicelib.timeutil import now_iso

    log.add("INFO", closing_line(status))
    written = log.flush()
    ended: JobFields = {"ended_at": now_iso(), "log_lines": written}
    ended.update(fields)
    job_store.transition(exec_id, ("Running",), status, ended)


def _start(job: JobRecord, log: _Log) -> tuple[subprocess.Popen[str], Channel]:
    """Start the sandboxed Flink side and hand it its work."""

    home = flink_home()
    if home is None:
        raise RunnerError("no local Flink: install apache-flink (make install) or set SPARKGATE_FLINK_HOME")
    check_java()
    spec, artefact = _spec(job)
    owner = str(job["owner"])
    uid = sandbox.owner_uid(owner)
    ours, theirs = socket.socketpair()
    fds = (theirs.fileno(), *([artefact.fileno()] if artefact else []))
    try:
        proc = subprocess.Popen(
            flink_command(theirs.fileno(), artefact.fileno() if artefact else None, owner, uid),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=flink_env(owner, home, str(job["exec_id"])),
            pass_fds=fds,
            cwd=str(sandbox.PROJECT_DIR),
            start_new_session=True,
        )
    finally:
        theirs.close()
        if artefact:
            artefact.close()
    log.add(
        "INFO",
        f"Flink {spec['mode'].upper()} {spec['type']} run on a local Flink ({home}), isolation: "
        f"{sandbox.isolation_mode()}",
    )
    channel = Channel(ours)
    channel.send(spec)
    return proc, channel


def supervise(job: JobRecord) -> int:
    """Run a Running Flink Job to its end (Succeed / Failed / Cancelled); the process's exit code."""
    from chalicelib import work_runs
    from chalicelib.store import jobs as job_store

    exec_id, owner = str(job["exec_id"]), str(job["owner"])
    log = _Log(exec_id)
    try:
        proc, channel = _start(job, log)
    except (OSError, RunnerError, work_runs.RunError, ChannelClosed) as err:
        log.add("ERROR", str(err))
        _end(exec_id, log, "Failed", {"error": str(err), "error_code": ERR_FLINK})
        return 1
    results = _Results(owner, exec_id)
    done: dict[str, Any] = {}

    def read_output() -> None:
        for line in proc.stdout or []:
            log.add("INFO", line.rstrip("\n"))

    def read_channel() -> None:
        with contextlib.suppress(ChannelClosed):
            while True:
                message, _ = channel.recv()
                kind = message.get("t")
                if kind == "page":
                    results.page(message)
                elif kind == "result":
                    results.result(message)
                elif kind == "done":
                    done.update(message)
                    return

    def kill(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    signal.signal(signal.SIGTERM, lambda *_: kill(signal.SIGKILL))
    readers = [threading.Thread(target=t, daemon=True) for t in (read_output, read_channel)]
    for reader in readers:
        reader.start()
    cancelled, stop_by = False, 0.0
    while proc.poll() is None:
        time.sleep(0.5)
        log.flush()
        if cancelled:
            if time.monotonic() > stop_by:
                log.add("WARN", "the Flink job did not stop in time: its process was killed")
                kill(signal.SIGKILL)
            continue
        fresh = job_store.get_job(exec_id)
        if fresh is None or fresh.get("cancel_requested") or fresh.get("status") != "Running":
            cancelled, stop_by = True, time.monotonic() + STOP_GRACE_SECONDS
            log.add("WARN", "kill requested: cancelling the Flink job (no savepoint is taken locally)")
            with contextlib.suppress(ChannelClosed):
                channel.send({"t": "cancel", "exec_id": exec_id})
    for reader in readers:
        reader.join(timeout=5)
    channel.close()
    remove_run_folder(run_tmp(owner, exec_id))
    if cancelled:
        _end(exec_id, log, "Cancelled", {"error": "cancelled by user", "progress": 1})
    elif proc.returncode == 0 and done and not done.get("error") and not results.over:
        fields = results.store()
        log.add("INFO", f"Flink run succeeded with {fields['result_sets']} result set(s)")
        fields["progress"] = 1
        _end(exec_id, log, "Succeed", fields)
    else:
        error = results.over or str(done.get("error") or "")
        if not error or done.get("with_tail"):
            tail = "\n".join(log.tail)
            error = f"{error or f'the Flink run exited with code {proc.returncode}'}\n{tail}"
        log.add("ERROR", error)
        _end(exec_id, log, "Failed", {"error": error, "error_code": ERR_FLINK, "progress": 1})
    return 0
