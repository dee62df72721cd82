"""The sandboxed side of a local Flink run (already the owner's uid, see :mod:`chalicelib.runners.flink`).

It reads one ``start`` message from its socket and runs it:

- ``sql``: each statement (split on ``;`` like SPARK_SQL) is parsed by Flink's own parser, checked
  (:func:`check_operation`), then executed on a PyFlink TableEnvironment (a local mini-cluster in
  this process's JVM). BATCH: an ``INSERT`` waits for its Flink job; a query's rows become a result
  set (paged like a Spark one). STREAMING: ``INSERT`` jobs are submitted and run until cancelled; a
  query's changelog rows are printed into the log.
- ``jar``: the jar (an inherited open file, copied into the owner's own temp folder) runs as
  ``java -cp <flink lib>/*:<jar> <main_class> <extra_params...>``: its
  ``StreamExecutionEnvironment.getExecutionEnvironment()`` is a local mini-cluster.

A ``cancel`` message cancels the submitted Flink jobs (or stops the jar's JVM). Last comes ``done``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from chalicelib.engine.channel import Channel, ChannelClosed
from chalicelib.engine.config import RESULT_PAGE_ROWS

#: Connectors a FLINK_SQL table may use (the ones Flink ships in lib/; ``filesystem`` paths must lie
#: inside the kernel's roots: the shared data roots and the owner's own area).
CONNECTORS = frozenset({"filesystem", "datagen", "print", "blackhole"})
#: Statements that load code or reach outside the run: refused, as the Spark SQL guard refuses them.
REFUSED_OPERATIONS = {
    "AddJarOperation": "ADD JAR",
    "RemoveJarOperation": "REMOVE JAR",
    "LoadModuleOperation": "LOAD MODULE",
    "UnloadModuleOperation": "UNLOAD MODULE",
    "UseModulesOperation": "USE MODULES",
    "CreateCatalogOperation": "CREATE CATALOG",
    "AlterCatalogOptionsOperation": "ALTER CATALOG",
    "CreateCatalogFunctionOperation": "CREATE FUNCTION",
    "CreateTempSystemFunctionOperation": "CREATE TEMPORARY SYSTEM FUNCTION",
    "AlterCatalogFunctionOperation": "ALTER FUNCTION",
    "AlterTableChangeOperation": "ALTER TABLE (options)",
    "AlterTableOptionsOperation": "ALTER TABLE (options)",
    "CreateModelOperation": "CREATE MODEL",
    "ExecutePlanOperation": "EXECUTE PLAN",
    "CompilePlanOperation": "COMPILE PLAN",
}
#: ``SET`` / ``RESET`` may change these settings only (planner and runtime tuning, never paths or code).
SETTABLE = re.compile(
    r"(table\.exec\.|table\.optimizer\.|table\.local-time-zone$|table\.display\.|execution\.runtime-mode$"
    r"|parallelism\.default$|pipeline\.name$|sql-client\.)"
)
STREAM_LOG_ROWS = 1000
MAX_ERROR_CHARS = 4000


class Refused(Exception):
    """A statement the local Flink runner does not run (the message says why)."""


def say(text: str) -> None:
    """One line into the Job's log (stdout is copied there by the supervisor)."""
    print(text, flush=True)


# ---- the guard --------------------------------------------------------------------------------


def _check_table(options: dict[str, str], roots: tuple[str, ...]) -> None:
    from chalicelib.engine import sql_guard

    connector = str(options.get("connector") or "")
    if connector not in CONNECTORS:
        allowed = ", ".join(sorted(CONNECTORS))
        raise Refused(f"refused: connector '{connector}' is not allowed (local Flink runs: {allowed})")
    if connector == "filesystem":
        rest = {k: v for k, v in options.items() if k not in ("connector", "format", "path")}
        fmt = "text" if options.get("format") == "raw" else str(options.get("format") or "")
        try:
            sql_guard.check_file_source(fmt, str(options.get("path") or ""), rest, roots)
        except sql_guard.SqlRefused as err:
            raise Refused(str(err)) from None


def check_operation(operation: Any, roots: tuple[str, ...]) -> None:
    """Raise :class:`Refused` for a parsed Flink operation the run must not execute."""
    name = operation.getClass().getSimpleName()
    if name in REFUSED_OPERATIONS:
        raise Refused(f"refused: {REFUSED_OPERATIONS[name]} is not allowed in a FLINK_SQL work")
    if name in ("SetOperation", "ResetOperation"):
        key = operation.getKey().orElse(None)
        if key is None or not SETTABLE.match(str(key)):
            shown = "all settings" if key is None else f"'{key}'"
            raise Refused(f"refused: {name[:-9].upper()} of {shown} (only planner/runtime tuning keys)")
    create = None
    if name == "CreateTableOperation":
        create = operation
    elif name in ("CreateTableASOperation", "ReplaceTableAsOperation"):
        create = operation.getCreateTableOperation()
    if create is not None:
        _check_table(dict(create.getCatalogTable().getOptions()), roots)


# ---- SQL --------------------------------------------------------------------------------------


def _type_name(data_type: Any) -> str:
    text = str(data_type).replace(" NOT NULL", "").lower()
    return "string" if text.startswith(("varchar", "char", "string")) else text


class Run:
    """One run's state, shared with the thread that listens for ``cancel``."""

    def __init__(self, channel: Channel, exec_id: str) -> None:
        self.channel, self.exec_id = channel, exec_id
        self.clients: list[Any] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.cancelled = threading.Event()
        self.lock = threading.Lock()

    def listen(self) -> None:
        """Wait for ``cancel`` (or the supervisor going away) and stop what runs."""
        try:
            while True:
                message, _ = self.channel.recv()
                if message.get("t") == "cancel":
                    break
        except ChannelClosed:
            pass
        self.cancelled.set()
        with self.lock:
            clients, proc = list(self.clients), self.proc
        for client in clients:
            try:
                client.cancel().result()
                say(f"Flink job {client.get_job_id()} cancelled")
            except Exception as err:  # already finished, or the mini-cluster is going away
                say(f"cancelling Flink job {client.get_job_id()}: {str(err).splitlines()[0][:300]}")
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def submitted(self, client: Any) -> None:
        with self.lock:
            self.clients.append(client)
        if self.cancelled.is_set():
            client.cancel()
        say(f"Flink job {client.get_job_id()} submitted")

    def send(self, message: dict[str, Any]) -> None:
        self.channel.send({**message, "exec_id": self.exec_id})


def _result_set(run: Run, index: int, result: Any, max_rows: int) -> int:
    """Collect a query's rows (at most ``max_rows``) as result set ``index``; answers its row count."""
    from chalicelib.engine.statements import json_value

    schema = result.get_table_schema()
    metadata = [
        {"columnName": name, "dataType": _type_name(data_type)}
        for name, data_type in zip(schema.get_field_names(), schema.get_field_data_types(), strict=True)
    ]
    page_rows = min(RESULT_PAGE_ROWS, max_rows)
    head: list[list[Any]] = []
    page: list[list[Any]] = []
    pages = total = 0
    truncated = False
    with result.collect() as rows:
        for row in rows:
            if total >= max_rows:
                truncated = True
                break
            page.append([json_value(v) for v in row])
            total += 1
            if len(page) == page_rows:
                if pages == 0:
                    head = page
                else:
                    run.send({"t": "page", "index": index, "page": pages, "rows": page})
                pages, page = pages + 1, []
    if page or pages == 0:
        if pages == 0:
            head = page
        else:
            run.send({"t": "page", "index": index, "page": pages, "rows": page})
        pages += 1
    run.send(
        {
            "t": "result",
            "index": index,
            "metadata": metadata,
            "rows": head,
            "truncated": truncated,
            "total_rows": total,
            "page_rows": page_rows,
            "pages": pages,
        }
    )
    return total


def _print_changelog(run: Run, result: Any) -> None:
    """A streaming query: its changelog rows into the log (the first :data:`STREAM_LOG_ROWS`)."""
    shown = 0
    with result.collect() as rows:
        for row in rows:
            if run.cancelled.is_set():
                return
            if shown < STREAM_LOG_ROWS:
                say(f"{row.get_row_kind().short_string()}{list(row)}")
                shown += 1


def run_sql(run: Run, spec: dict[str, Any]) -> None:
    """Run the statements of ``spec["sql"]`` (see the module docstring)."""
    from pyflink.java_gateway import get_gateway
    from pyflink.table import EnvironmentSettings, ResultKind, TableEnvironment
    from pyflink.table.table_result import TableResult

    from chalicelib.engine import sql_guard
    from chalicelib.engine.statements import split_sql

    streaming = spec.get("type") == "STREAMING"
    statements = split_sql(str(spec.get("sql") or ""))
    if not statements:
        raise Refused("no SQL statement in the work's .sql file")
    roots = sql_guard.roots_from_env()
    settings = EnvironmentSettings.in_streaming_mode() if streaming else EnvironmentSettings.in_batch_mode()
    tenv = TableEnvironment.create(settings)
    config = tenv.get_config()
    config.set("parallelism.default", "1")
    config.set("table.dynamic-table-options.enabled", "false")  # no OPTIONS('path'=...) hints
    modify = get_gateway().jvm.java.lang.Class.forName("org.apache.flink.table.operations.ModifyOperation")
    parser = tenv._j_tenv.getParser()
    max_rows = int(spec.get("max_rows") or 1_000_000)
    running: list[Any] = []
    sets = 0
    for number, statement in enumerate(statements, 1):
        if run.cancelled.is_set():
            return
        say(f"statement {number}/{len(statements)}: {statement[:200]}")
        operation = parser.parse(statement).get(0)
        check_operation(operation, roots)
        result = TableResult(tenv._j_tenv.executeInternal(operation))
        client = result.get_job_client()
        if client is not None:
            run.submitted(client)
        if modify.isInstance(operation):
            if streaming:
                running.append(result)
            else:
                result.wait()
                say(f"statement {number}: Flink job {client.get_job_id() if client else ''} finished")
        elif result.get_result_kind() == ResultKind.SUCCESS_WITH_CONTENT:
            if streaming and client is not None:
                _print_changelog(run, result)
            else:
                rows = _result_set(run, sets, result, max_rows)
                say(f"statement {number}: {rows} row(s)")
                sets += 1
        else:
            say(f"statement {number}: OK")
    for result in running:
        say("streaming: running until cancelled")
        result.wait()


# ---- JAR --------------------------------------------------------------------------------------


def run_jar(run: Run, spec: dict[str, Any], artefact_fd: int) -> int:
    """Run the jar's main class on a local mini-cluster; answers the JVM's exit code."""
    from pyflink.pyflink_gateway_server import get_jvm_opts

    home = Path(os.environ["FLINK_HOME"])
    jar = Path(os.environ["TMPDIR"]) / "work.jar"
    with os.fdopen(artefact_fd, "rb") as source, open(jar, "wb") as target:
        shutil.copyfileobj(source, target)
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else "java"
    command = [
        java,
        *os.environ.get("JVM_ARGS", "").split(),
        *get_jvm_opts(dict(os.environ)),
        f"-Dlog4j.configurationFile={os.environ.get('LOG4J_PROPERTIES', '')}",
        f"-Dlog.file={jar.with_suffix('.log')}",
        "-cp",
        os.pathsep.join([str(home / "lib" / "*"), str(jar)]),
        str(spec["main_class"]),
        *[str(a) for a in spec.get("args") or []],
    ]
    say(f"running {spec['main_class']} on a local Flink mini-cluster")
    try:
        with run.lock:
            if run.cancelled.is_set():
                return 143
            run.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        return run.proc.wait()
    finally:
        jar.unlink(missing_ok=True)


# ---- entry ------------------------------------------------------------------------------------


def _error_text(err: BaseException) -> str:
    """A failure as one readable message: a Java exception's chain of causes, else the Python error."""
    java = getattr(err, "java_exception", None)
    if java is not None:
        causes: list[str] = []
        while java is not None and len(causes) < 8:
            causes.append(str(java.toString()))
            java = java.getCause()
        return "\n  caused by: ".join(causes)[:MAX_ERROR_CHARS]
    return (f"{type(err).__name__}: {err}" if not isinstance(err, Refused) else str(err))[:MAX_ERROR_CHARS]


def main(argv: list[str]) -> int:
    """Serve one run over the socket ``--fd`` (after :func:`sandbox.enter`)."""
    parser = argparse.ArgumentParser(prog="flink_kernel")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--artefact-fd", type=int, default=None)
    args = parser.parse_args(argv)
    tmp = Path(os.environ["TMPDIR"])  # the run's own folder (flink.run_tmp), private to the owner
    tmp.mkdir(mode=0o700, exist_ok=True)
    channel = Channel(socket.socket(fileno=args.fd))
    spec, _ = channel.recv()
    run = Run(channel, str(spec.get("exec_id")))
    threading.Thread(target=run.listen, name="cancel", daemon=True).start()
    done: dict[str, Any] = {"t": "done"}
    try:
        if spec.get("mode") == "jar":
            if args.artefact_fd is None:
                raise Refused("no jar was handed over")
            code = run_jar(run, spec, args.artefact_fd)
            if code != 0 and not run.cancelled.is_set():
                done.update({"error": f"{spec.get('main_class')} exited with code {code}", "with_tail": True})
        else:
            run_sql(run, spec)
    except Exception as err:
        if not run.cancelled.is_set():
            if not isinstance(err, Refused):
                traceback.print_exc(file=sys.stdout)
            done["error"] = _error_text(err)
    done["cancelled"] = run.cancelled.is_set()
    try:
        run.send(done)
    except ChannelClosed:
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown: PyFlink's gateway JVM is ended with this process
