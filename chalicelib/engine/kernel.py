"""The kernel: the SparkSession and the user's code, with no credentials and no store access.

It runs under the user's own uid (see :mod:`chalicelib.engine.sandbox`) and talks only to its
supervisor over the inherited socket (:mod:`chalicelib.engine.channel`). Messages in:

- ``start {config}``: build the SparkSession; answers ``ready {host, pid}`` or ``fatal {error}``;
- ``catalog {tables}``: load a geo session's tables (temp views); answers ``catalog_done {tables, failed}``;
- ``run {job}``: run one job (``exec_id, run_type, code, scope, task_id, geo_op``) in a thread;
- ``cancel {exec_id}``: cancel its Spark jobs and interrupt its thread;
- ``stop``: stop Spark and exit.

Messages out, while a job runs: ``log {exec_id, lines}``, ``progress {exec_id, progress, info}``,
``page {exec_id, index, page, rows}``; at its end one ``done {exec_id, result_sets, error, interrupted,
progress, info, geo_result}`` (a map's PNG as the frame's blob). Everything the outside world learns is
written by the supervisor, which checks what it is told.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from chalicelib.engine import config as engine_config
from chalicelib.engine import leftovers
from chalicelib.engine.capture import TextOutput, capture_into
from chalicelib.engine.channel import Channel, ChannelClosed
from chalicelib.engine.statements import PageSink, run_python, run_sql, text_result_set, user_traceback

#: At most this much of the JVM stack of a failed SQL statement goes to the Job's log (after its message).
MAX_STACK_CHARS = 16 * 1024


def quiet_query_context_loggers() -> None:
    """pyspark logs every captured SQL error as one JSON line holding the whole Java stack, to stderr, so
    into the Job's log *before* the clean message; the kernel reports errors itself (message, then stack)."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).disabled = True


def engine_stack(err: BaseException) -> str:
    """The JVM stack of a Spark error (pyspark keeps it beside the message), bounded; "" for other errors."""
    stack = getattr(err, "_stackTrace", None)
    if not isinstance(stack, str) or not stack.strip():
        return ""
    stack = stack.strip()
    return stack if len(stack) <= MAX_STACK_CHARS else stack[:MAX_STACK_CHARS] + "\n... (stack truncated)"


LOG_SEND_SECONDS = 0.1
PROGRESS_SECONDS = 0.5
INTERRUPT_GRACE_SECONDS = 5.0  # how long a cancelled job's thread gets to unwind
DEFAULT_SCOPE = "__session__"
MAX_LINE_CHARS = 16_000
#: sourced by the JVM's launch scripts so they leave no zombie under the JVM (see the file)
JVM_LAUNCH_BASH_ENV = os.path.join(os.path.dirname(__file__), "reap_before_exec.sh")


class JobInterrupted(BaseException):
    """Raised inside a job's thread when it is cancelled or timed out."""


#: Session settings fixed when the SparkSession starts (a pool kernel keeps its own on adoption).
_STATIC_KEYS = ("master", "configs", "envs", "app_name")


def build_spark(config: dict[str, Any], app_name: str = "sparkgate") -> SparkSession:
    """A SparkSession from a session config (master, app_name, configs, envs); local masters get no UI.

    The driver's heap comes from the kernel's memory quota, a JVM that runs out of memory exits
    (so its Job fails at once instead of hanging), and the SQL guard's settings come last.
    """
    from chalicelib.engine import sandbox

    master = str(config.get("master") or "local[*]")
    envs = {str(k): str(v) for k, v in (config.get("envs") or {}).items()}
    os.environ.update(envs)
    builder = SparkSession.builder.master(master).appName(str(config.get("app_name") or app_name))
    home = os.environ.get("HOME", "/tmp")
    tmp = os.environ.get("TMPDIR", "/tmp")
    configs: dict[str, Any] = {
        "spark.driver.memory": f"{sandbox.limits().jvm_heap_mb}m",
        "spark.driver.extraJavaOptions": f"-XX:+ExitOnOutOfMemoryError -Djava.io.tmpdir={tmp} -Duser.home={home}",
        "spark.local.dir": tmp,
        "spark.sql.warehouse.dir": os.path.join(home, "spark-warehouse"),
    }
    if master.startswith("local"):  # a private network namespace has only its loopback
        configs.update({"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"})
        configs.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    configs.update({f"spark.executorEnv.{k}": v for k, v in envs.items()})
    configs.update(_user_configs(dict(config.get("configs") or {})))
    configs = _harden(configs)
    for key, value in configs.items():
        builder = builder.config(str(key), str(value))
    saved, os.environ["BASH_ENV"] = os.environ.get("BASH_ENV"), JVM_LAUNCH_BASH_ENV
    try:
        spark = builder.getOrCreate()
    finally:
        if saved is None:
            os.environ.pop("BASH_ENV", None)
        else:
            os.environ["BASH_ENV"] = saved
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _user_configs(configs: dict[str, Any]) -> dict[str, Any]:
    """The session's own Spark settings without those a user may not choose (see ``sql_guard``)."""
    try:
        from chalicelib.engine.sql_guard import unsafe_user_confs
    except ImportError:
        return configs
    for key in unsafe_user_confs(configs):
        print(f"sparkgate kernel: setting {key} is the platform's, ignored", file=sys.stderr, flush=True)
        configs.pop(key)
    return configs


def _harden(configs: dict[str, Any]) -> dict[str, Any]:
    """The SQL guard's settings over ``configs`` (when the guard is installed)."""
    try:
        from chalicelib.engine.sql_guard import harden
    except ImportError:
        return configs
    return dict(harden(configs))


def register_extensions(spark: SparkSession, log: Callable[[str], None] | None = None) -> bool:
    """Register the ``ST_`` geo functions when that module is installed; answers whether it was."""
    try:
        from chalicelib.engine.geo.functions import register_st_functions
    except ImportError:
        return False
    try:
        register_st_functions(spark)
    except Exception as err:  # a broken extension must not take the session down
        if log:
            log(f"ST_ functions not registered: {err}")
        return False
    return True


def _async_raise(thread: threading.Thread, exc: type[BaseException]) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc))


class ChannelLog:
    """A job's log lines, sent to the supervisor in batches (``log {exec_id, lines}``)."""

    def __init__(self, channel: Channel, exec_id: str) -> None:
        self.channel, self.exec_id = channel, exec_id
        self._lines: list[list[str]] = []
        self._lock = threading.Lock()

    def add(self, level: str, text: str) -> None:
        """Append one or more lines (``text`` is split on newlines)."""
        with self._lock:
            self._lines.extend([level, line[:MAX_LINE_CHARS]] for line in text.splitlines() or [""])

    def info(self, text: str) -> None:
        """An INFO line."""
        self.add("INFO", text)

    def warn(self, text: str) -> None:
        """A WARN line."""
        self.add("WARN", text)

    def send(self) -> None:
        """Send the pending lines (in order; concurrent callers serialise on the lock)."""
        with self._lock:
            if self._lines:
                self.channel.send({"t": "log", "exec_id": self.exec_id, "lines": self._lines})
                self._lines = []


class Kernel:
    """Runs jobs on one SparkSession for one supervisor; see the module docstring."""

    def __init__(self, channel: Channel, spark: SparkSession | None = None, own_process: bool = False) -> None:
        self.channel = channel
        self.spark = spark
        #: a kernel process of its own ends what a Job leaves running (never an in-process test kernel)
        self.sweeps = own_process and leftovers.become_subreaper()
        self._before: set[leftovers.Process] = set()
        self.config: dict[str, Any] = {}
        self.max_rows = engine_config.DEFAULT_MAX_RESULT_ROWS
        self.namespaces: dict[str, dict[str, Any]] = {}
        self._frame: Callable[[str], DataFrame] | None = None
        self._job: tuple[str, threading.Thread] | None = None
        self._streams_before: set[str] = set()
        self._cancelled = threading.Event()

    # -- messages ---------------------------------------------------------------------------------

    def serve(self) -> int:
        """Answer messages until ``stop`` or the end of the channel; the exit code."""
        while True:
            try:
                message, _ = self.channel.recv()
            except ChannelClosed:
                return 0
            kind = message["t"]
            if kind == "start":
                self._start(
                    dict(message.get("config") or {}),
                    str(message.get("app_name") or "sparkgate"),
                    bool(message.get("warm")),
                )
            elif kind == "adopt":
                self._adopt(message)
            elif kind == "catalog":
                self._catalog(list(message.get("tables") or []))
            elif kind == "run":
                self._run(dict(message["job"]))
            elif kind == "cancel":
                self._cancel(str(message.get("exec_id")))
            elif kind == "stop":
                if self.spark is not None and message.get("stop_spark", True):
                    with contextlib.suppress(Exception):
                        self.spark.stop()
                return 0

    def _start(self, config: dict[str, Any], app_name: str, warm: bool = False) -> None:
        self.config = config
        self.max_rows = int(config.get("max_result_rows") or engine_config.DEFAULT_MAX_RESULT_ROWS)
        try:
            if self.spark is None:
                self.spark = build_spark(config, app_name)
            register_extensions(self.spark, lambda m: print(f"sparkgate kernel: {m}", file=sys.stderr, flush=True))
            quiet_query_context_loggers()
            self._frame = self._sql_frame()
            if warm:
                self._warm_up()
        except BaseException as err:
            self.channel.send({"t": "fatal", "error": f"{type(err).__name__}: {err}"[:4000]})
            raise SystemExit(1) from err
        self.channel.send({"t": "ready", "host": socket.gethostname(), "pid": os.getpid()})

    def _warm_up(self) -> None:
        """Run a statement through the path a Job takes (guard, parse, plan, a task, collect), so a pooled
        kernel's first Job does not pay the JVM's first-query class loading and code generation."""
        assert self.spark is not None
        run_sql(self.spark, "SELECT 1 AS warm_up", 1, lambda _: None, None, self._frame)

    def _adopt(self, message: dict[str, Any]) -> None:
        """A warm pool kernel becomes a session's: the session's own settings (result rows...) and, for
        a fresh kernel, its user's area as home, working folder and the SQL guard's own root."""
        self.config.update({k: v for k, v in dict(message.get("config") or {}).items() if k not in _STATIC_KEYS})
        self.max_rows = int(self.config.get("max_result_rows") or engine_config.DEFAULT_MAX_RESULT_ROWS)
        area = message.get("area")
        if isinstance(area, str) and area:
            before = os.environ.get("HOME", "")
            from chalicelib.engine.sql_guard import _split_roots

            roots = [r for r in _split_roots(os.environ.get("SPARKGATE_KERNEL_ROOTS", "")) if r and r != before]
            os.environ.update({"HOME": area, "SPARKGATE_KERNEL_ROOTS": ":".join([*roots, area])})
            os.chdir(area)
        self.channel.send({"t": "adopted", "pid": os.getpid()})

    def _sql_frame(self) -> Callable[[str], DataFrame] | None:
        """``spark.sql`` with the geo rewrites (point-vs-polygon predicates) when that module is installed."""
        try:
            from chalicelib.engine.geo.ops import sql_frame
        except ImportError:
            return None
        spark = self.spark
        return lambda statement: sql_frame(spark, statement)

    def _catalog(self, tables: list[dict[str, Any]]) -> None:
        from chalicelib.engine.geo.ops import load_table

        assert self.spark is not None
        replayed: list[str] = []
        failed: list[dict[str, str]] = []
        for table in tables:
            try:
                load_table(self.spark, table)
                replayed.append(str(table["name"]))
            except Exception as err:  # one bad definition must not hide the others
                failed.append({"name": str(table.get("name")), "error": f"{type(err).__name__}: {err}"[:500]})
        self.channel.send({"t": "catalog_done", "tables": replayed, "failed": failed})

    def namespace(self, scope: str) -> dict[str, Any]:
        """The Python namespace of ``scope`` (created with ``spark`` and ``sc`` bound)."""
        assert self.spark is not None
        if scope not in self.namespaces:
            self.namespaces[scope] = {"__name__": "__sparkgate__", "spark": self.spark, "sc": self.spark.sparkContext}
        return self.namespaces[scope]

    # -- one job ----------------------------------------------------------------------------------

    def _run(self, job: dict[str, Any]) -> None:
        if self._job is not None and self._job[1].is_alive():
            self.channel.send({"t": "done", "exec_id": job.get("exec_id"), "error": "kernel busy", "result_sets": []})
            return
        self._cancelled.clear()
        self._streams_before = self._active_stream_ids()
        if self.sweeps:
            self._before = leftovers.snapshot()
        worker = threading.Thread(target=self._work, args=(job,), name=f"job-{job['exec_id']}", daemon=True)
        self._job = (str(job["exec_id"]), worker)
        worker.start()

    def _work(self, job: dict[str, Any]) -> None:
        exec_id = str(job["exec_id"])
        assert self.spark is not None
        sc = self.spark.sparkContext
        log = ChannelLog(self.channel, exec_id)
        done: dict[str, Any] = {"t": "done", "exec_id": exec_id, "result_sets": [], "error": None}
        blob = b""
        stop_side = threading.Event()
        side = threading.Thread(target=self._side_loop, args=(exec_id, log, stop_side), daemon=True)
        side.start()

        def sinks(index: int) -> PageSink:
            def sink(page: int, rows: list[list[Any]]) -> None:
                log.send()
                self.channel.send({"t": "page", "exec_id": exec_id, "index": index, "page": page, "rows": rows})

            return sink

        run_type = job.get("run_type")
        # a Python job's printed output is also its first result set, a TEXT one (as Linkis's engines write it)
        output = TextOutput(self.max_rows, MAX_LINE_CHARS) if run_type == "python" else None
        capture = capture_into(log, output)

        def after_output(index: int) -> PageSink:  # a table set comes after the TEXT set once anything printed
            return sinks(index + (1 if capture.printed() else 0))

        try:
            with capture:
                sc.setJobGroup(exec_id, f"sparkgate job {job.get('task_id')}", interruptOnCancel=True)
                if run_type == "sql":
                    done["result_sets"] = run_sql(self.spark, job["code"], self.max_rows, log.info, sinks, self._frame)
                elif run_type == "python":
                    scope = str(job.get("scope") or DEFAULT_SCOPE)
                    done["result_sets"] = run_python(self.namespace(scope), job["code"], self.max_rows, after_output)
                elif run_type == "geo":  # internal: the geo surface's ops (chalicelib.geo)
                    from chalicelib.engine.geo.ops import run_geo_op

                    scope = str(job.get("scope") or DEFAULT_SCOPE)
                    result = run_geo_op(self.spark, self.namespace(scope), dict(job.get("geo_op") or {}))
                    png = result.pop("png", None)
                    if isinstance(png, bytes):
                        blob = png
                    done["geo_result"] = json.loads(json.dumps(result, default=str))
                else:
                    raise ValueError(f"run type {run_type!r} is not supported by the engine")
            if output is not None and output.total:  # complete now: the capture flushed a partial last line
                text = text_result_set(output.lines, output.total, self.max_rows, sinks(0))
                done["result_sets"] = [text, *done["result_sets"]]
        except JobInterrupted:
            done["interrupted"] = True
        except BaseException as err:
            if not self._jvm_alive():  # e.g. it ran out of memory and exited: this kernel is done for
                print(f"sparkgate kernel: the JVM is gone ({type(err).__name__})", file=sys.stderr, flush=True)
                os._exit(75)
            if self._cancelled.is_set():
                done["interrupted"] = True
            elif job.get("run_type") == "python":
                done["error"] = user_traceback(err)
            else:  # the clean message is the error; the engine's stack follows it in the log
                done["error"] = f"{type(err).__name__}: {err}".rstrip()
                stack = engine_stack(err)
                if stack:
                    done["error_detail"] = stack
        finally:
            with contextlib.suppress(Exception):
                sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
            stop_side.set()
            side.join(2)
            if self.sweeps:
                self._sweep(log)
        done["progress"], done["info"] = self.progress(exec_id)
        with contextlib.suppress(ChannelClosed):
            log.send()
            self.channel.send(done, blob)

    def _sweep(self, log: ChannelLog) -> None:
        """End the processes the job started (see :mod:`leftovers`), keeping the JVM's own."""
        assert self.spark is not None
        proc = getattr(self.spark.sparkContext._gateway, "proc", None)  # type: ignore[attr-defined]
        try:
            ended = leftovers.sweep(self._before, proc.pid if proc is not None else None)
        except OSError as err:
            print(f"sparkgate kernel: the process sweep failed: {err}", file=sys.stderr, flush=True)
            return
        if ended:
            log.warn(f"ended {len(ended)} process(es) the job left running")

    def _jvm_alive(self) -> bool:
        try:
            assert self.spark is not None
            self.spark.sparkContext._jvm.java.lang.System.nanoTime()  # type: ignore[union-attr]
        except Exception:
            return False
        return True

    def _side_loop(self, exec_id: str, log: ChannelLog, stop: threading.Event) -> None:
        """While the job runs: its log lines every 100 ms, its progress every 500 ms when it changed."""
        last: tuple[float, list[dict[str, int]]] | None = None
        next_progress = time.monotonic() + PROGRESS_SECONDS
        while not stop.wait(LOG_SEND_SECONDS):
            try:
                log.send()
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + PROGRESS_SECONDS
                    got = self.progress(exec_id)
                    if got != last and got[1]:
                        last = got
                        self.channel.send({"t": "progress", "exec_id": exec_id, "progress": got[0], "info": got[1]})
            except ChannelClosed:
                return
            except Exception as err:  # progress is best effort
                print(f"sparkgate kernel: progress failed: {err}", file=sys.stderr, flush=True)

    def progress(self, exec_id: str) -> tuple[float, list[dict[str, int]]]:
        """Progress 0..1 and per-Spark-job task counts of the job group ``exec_id``."""
        assert self.spark is not None
        tracker = self.spark.sparkContext.statusTracker()
        infos: list[dict[str, int]] = []
        done = total = 0
        for job_id in sorted(tracker.getJobIdsForGroup(exec_id)):
            info = tracker.getJobInfo(job_id)
            if info is None:
                continue
            counts = {"succeed": 0, "failed": 0, "running": 0, "total": 0}
            for stage_id in info.stageIds:
                stage = tracker.getStageInfo(stage_id)
                if stage is None:
                    continue
                counts["succeed"] += stage.numCompletedTasks
                counts["failed"] += stage.numFailedTasks
                counts["running"] += stage.numActiveTasks
                counts["total"] += stage.numTasks
            infos.append(
                {
                    "id": int(job_id),
                    "succeedTasks": counts["succeed"],
                    "failedTasks": counts["failed"],
                    "runningTasks": counts["running"],
                    "totalTasks": counts["total"],
                }
            )
            done += counts["succeed"]
            total += counts["total"]
        return (round(min(done / total, 0.99), 4) if total else 0.0), infos

    # -- cancel -----------------------------------------------------------------------------------

    def _active_stream_ids(self) -> set[str]:
        try:
            assert self.spark is not None
            return {str(q.id) for q in self.spark.streams.active}
        except Exception:
            return set()

    def _cancel(self, exec_id: str) -> None:
        """Cancel the running job (its streams, its Spark jobs, its thread); the supervisor kills the
        kernel when the thread does not unwind in time."""
        if self._job is None or self._job[0] != exec_id or not self._job[1].is_alive():
            return
        assert self.spark is not None
        worker = self._job[1]
        self._cancelled.set()
        for query in list(self.spark.streams.active):
            if str(query.id) not in self._streams_before:
                with contextlib.suppress(Exception):
                    query.stop()
        with contextlib.suppress(Exception):
            self.spark.sparkContext.cancelJobGroup(exec_id)
        threading.Thread(target=self._interrupt, args=(worker,), daemon=True).start()

    @staticmethod
    def _interrupt(worker: threading.Thread) -> None:
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        while worker.is_alive() and time.monotonic() < deadline:
            _async_raise(worker, JobInterrupted)
            worker.join(0.1)


def main(fd: int) -> int:
    """The kernel process: serve the supervisor on socket ``fd``."""
    sock = socket.socket(fileno=fd)
    return Kernel(Channel(sock), own_process=True).serve()
