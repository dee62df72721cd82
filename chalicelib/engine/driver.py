"""The engine's driver loop: session mode (a warm SparkSession serving its session's queue) and batch mode.

Everything the outside world learns goes through ``chalicelib.store.jobs``: the job's status
(conditional transitions only), its log chunks, progress, result sets; the session item's heartbeat.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from chalicelib.config import settings
from chalicelib.engine import config as engine_config
from chalicelib.engine.capture import JobLog, capture_into
from chalicelib.engine.statements import PageSink, ResultSet, run_python, run_sql, user_traceback
from chalicelib.store import jobs as job_store
from chalicelib.timeutil import now_iso

POLL_BUSY_SECONDS = 0.02  # queue poll while recently active
POLL_IDLE_SECONDS = 0.5  # ... and when idle
BUSY_WINDOW_SECONDS = 30.0  # "recently active"
WATCH_SECONDS = 0.2  # cancel/timeout check and log flush while a job runs
PROGRESS_SECONDS = 0.5
INTERRUPT_GRACE_SECONDS = 5.0  # how long a cancelled job's thread gets to unwind before it is abandoned
PREVIEW_MAX_CHARS = 64_000
DEFAULT_SCOPE = "__session__"


class JobInterrupted(BaseException):
    """Raised inside a job's thread when it is cancelled or timed out."""


def build_spark(config: dict[str, Any], master: str | None = None, app_name: str = "sparkgate") -> SparkSession:
    """A SparkSession from a session config (master, app_name, configs, envs); local masters get no UI."""
    master = master or str(config.get("master") or settings().spark_master)
    envs = {str(k): str(v) for k, v in (config.get("envs") or {}).items()}
    os.environ.update(envs)
    builder = SparkSession.builder.master(master).appName(str(config.get("app_name") or app_name))
    configs: dict[str, Any] = {}
    if master.startswith("local"):
        configs.update({"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"})
    configs.update({f"spark.executorEnv.{k}": v for k, v in envs.items()})
    configs.update(config.get("configs") or {})
    for key, value in configs.items():
        builder = builder.config(str(key), str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def register_extensions(spark: SparkSession, log: Any = None) -> bool:
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


class _Outcome:
    def __init__(self) -> None:
        self.result_sets: list[ResultSet] = []
        self.error: BaseException | None = None
        self.error_text: str | None = None


class JobExecutor:
    """Runs claimed jobs on one SparkSession: code in a worker thread, watched for cancel/timeout/progress."""

    def __init__(self, spark: SparkSession, config: dict[str, Any]) -> None:
        self.spark = spark
        self.config = config
        self.max_rows = int(config.get("max_result_rows") or engine_config.DEFAULT_MAX_RESULT_ROWS)
        self.namespaces: dict[str, dict[str, Any]] = {}
        self._streams_before: dict[str, set[str]] = {}  # per running job: stream ids active when it started
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store")
        self._frame = self._sql_frame()

    def _sql_frame(self) -> Callable[[str], DataFrame] | None:
        """``spark.sql`` with the geo rewrites (point-vs-polygon predicates) when that module is installed."""
        try:
            from chalicelib.engine.geo.ops import sql_frame
        except ImportError:
            return None
        return lambda statement: sql_frame(self.spark, statement)

    def namespace(self, scope: str) -> dict[str, Any]:
        """The Python namespace of ``scope`` (created with ``spark`` and ``sc`` bound)."""
        if scope not in self.namespaces:
            self.namespaces[scope] = {
                "__name__": "__sparkgate__",
                "spark": self.spark,
                "sc": self.spark.sparkContext,
            }
        return self.namespaces[scope]

    # -- the job's own thread -------------------------------------------------------------------

    def _work(self, job: dict[str, Any], log: JobLog, outcome: _Outcome) -> None:
        exec_id = job["exec_id"]
        sc = self.spark.sparkContext

        def sinks(index: int) -> PageSink:
            return lambda page, rows: job_store.put_result_page(job["owner"], exec_id, index, page, rows)

        try:
            with capture_into(log):
                sc.setJobGroup(exec_id, f"sparkgate job {job.get('task_id')}", interruptOnCancel=True)
                if job["run_type"] == "sql":
                    outcome.result_sets = run_sql(self.spark, job["code"], self.max_rows, log.info, sinks, self._frame)
                elif job["run_type"] == "python":
                    scope = str(job.get("scope") or DEFAULT_SCOPE)
                    outcome.result_sets = run_python(self.namespace(scope), job["code"], self.max_rows, sinks)
                elif job["run_type"] == "geo":  # internal: the geo surface's ops (chalicelib.geo)
                    from chalicelib.engine.geo.ops import geo_result_sets

                    scope = str(job.get("scope") or DEFAULT_SCOPE)
                    outcome.result_sets = geo_result_sets(self.spark, self.namespace(scope), job)
                else:
                    raise ValueError(f"run type {job['run_type']!r} is not supported by the engine")
        except JobInterrupted as err:
            outcome.error = err
        except BaseException as err:
            outcome.error = err
            outcome.error_text = (
                user_traceback(err) if job["run_type"] == "python" else f"{type(err).__name__}: {err}".rstrip()
            )
        finally:
            with contextlib.suppress(Exception):
                sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    # -- progress -------------------------------------------------------------------------------

    def progress(self, exec_id: str) -> tuple[float, list[dict[str, int]]]:
        """Progress 0..1 and per-Spark-job task counts of the job group ``exec_id``."""
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

    # -- the watcher (caller's thread) ----------------------------------------------------------

    def run(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Run a job already moved to Running; writes its log, progress, results and final status."""
        exec_id = job["exec_id"]
        log = JobLog(exec_id, int(job.get("log_lines") or 0))
        try:
            return self._run(job, log)
        except BaseException as err:  # the engine itself failed or was stopped: never leave the job Running
            status, reason, code = "Failed", f"engine error: {type(err).__name__}: {err}", engine_config.ERR_ENGINE
            with contextlib.suppress(Exception):
                if (job_store.get_job(exec_id) or {}).get("cancel_requested"):
                    # a kill that outran the watcher (e.g. SIGTERM from a cancel) is still the user's cancel
                    status, reason, code = "Cancelled", "cancelled by user", engine_config.ERR_CANCELLED
            log.error(reason)
            try:
                lines = log.flush(update_count=False)
            except Exception:
                lines = log.flushed
            job_store.transition(
                exec_id,
                ("Running",),
                status,
                {"error": reason, "error_code": code, "ended_at": now_iso(), "log_lines": lines},
            )
            if not isinstance(err, Exception):
                raise
            return None
        finally:
            self._streams_before.pop(exec_id, None)

    def _run(self, job: dict[str, Any], log: JobLog) -> dict[str, Any] | None:
        exec_id = job["exec_id"]
        sc = self.spark.sparkContext
        runtime = float(job.get("runtime_seconds") or 0)
        started = time.monotonic()
        log.info(f"job {job.get('task_id')} ({job['run_type']}) started on {socket.gethostname()} pid {os.getpid()}")
        outcome = _Outcome()
        self._streams_before[exec_id] = self._active_stream_ids()
        worker = threading.Thread(target=self._work, args=(job, log, outcome), name=f"job-{exec_id}", daemon=True)
        worker.start()
        stop_reason: str | None = None
        next_watch = started + WATCH_SECONDS
        next_progress = started + PROGRESS_SECONDS
        last_progress: tuple[float, list[dict[str, int]]] | None = None
        while worker.is_alive():
            worker.join(0.02)
            now = time.monotonic()
            if not worker.is_alive():
                break
            if now >= next_watch:
                next_watch = now + WATCH_SECONDS
                log.flush()
                if runtime and now - started > runtime:
                    stop_reason = "Timeout"
                else:
                    current = job_store.get_job(exec_id)
                    if current is None or current.get("cancel_requested") or current["status"] != "Running":
                        stop_reason = "Cancelled"
                if stop_reason:
                    break
            if now >= next_progress:
                next_progress = now + PROGRESS_SECONDS
                got = self.progress(exec_id)
                if got != last_progress and got[1]:
                    last_progress = got
                    job_store.update_job_fields(exec_id, {"progress": got[0], "progress_info": got[1]})
        if stop_reason:
            return self._stop(job, log, worker, stop_reason, runtime)
        return self._finish(job, log, outcome, sc)

    def _active_stream_ids(self) -> set[str]:
        try:
            return {str(q.id) for q in self.spark.streams.active}
        except Exception:
            return set()

    def _stop_streams(self, job: dict[str, Any]) -> None:
        """Stop the streaming queries this job started (a thread blocked in ``awaitTermination`` then returns)."""
        before = self._streams_before.get(job["exec_id"], set())
        for query in list(self.spark.streams.active):
            if str(query.id) not in before:
                with contextlib.suppress(Exception):
                    query.stop()

    def _stop(
        self, job: dict[str, Any], log: JobLog, worker: threading.Thread, status: str, runtime: float
    ) -> dict[str, Any] | None:
        exec_id = job["exec_id"]
        if status == "Timeout":
            reason = f"job exceeded its run-time limit of {runtime:g} s"
            log.error(reason)
            code = engine_config.ERR_TIMEOUT
        else:
            reason = "cancelled by user"
            log.warn("kill requested: cancelling the job's Spark jobs")
            code = engine_config.ERR_CANCELLED
        self._stop_streams(job)
        self.spark.sparkContext.cancelJobGroup(exec_id)
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        while worker.is_alive() and time.monotonic() < deadline:
            _async_raise(worker, JobInterrupted)
            worker.join(0.1)
        if worker.is_alive():
            log.warn("the job's code did not stop in time; its thread is abandoned")
        lines = log.flush(update_count=False)
        fields = {"error": reason, "error_code": code, "ended_at": now_iso(), "log_lines": lines}
        return job_store.transition(exec_id, ("Running",), status, fields)

    def _finish(self, job: dict[str, Any], log: JobLog, outcome: _Outcome, sc: Any) -> dict[str, Any] | None:
        exec_id, owner = job["exec_id"], job["owner"]
        progress, infos = self.progress(exec_id)
        if outcome.error is not None:
            text = outcome.error_text or f"{type(outcome.error).__name__}: {outcome.error}"
            log.error(text)
            lines = log.flush(update_count=False)
            failed = {
                "error": text,
                "error_code": engine_config.ERR_EXECUTION,
                "ended_at": now_iso(),
                "log_lines": lines,
                "progress": progress,
                "progress_info": infos,
            }
            return job_store.transition(exec_id, ("Running",), "Failed", failed)
        for index, document in enumerate(outcome.result_sets):
            if document.get("truncated"):
                log.warn(f"result set {index + 1} truncated to {self.max_rows} rows (max_result_rows)")
        sets = len(outcome.result_sets)
        log.info(f"job {job.get('task_id')} succeeded with {sets} result set(s)")
        # results (S3) and the last log lines (table) are stored side by side; Succeed only after both
        stored = [
            self._io.submit(job_store.put_result_set, owner, exec_id, index, document)
            for index, document in enumerate(outcome.result_sets)
        ]
        lines = log.flush(update_count=False)
        for future in stored:
            future.result()
        location = f"s3://{settings().bucket_name}/{job_store.result_prefix(owner, exec_id)}"
        final_info = [{**i, "succeedTasks": i["totalTasks"] - i["failedTasks"], "runningTasks": 0} for i in infos]
        fields: dict[str, Any] = {
            "ended_at": now_iso(),
            "log_lines": lines,
            "progress": 1.0,
            "progress_info": final_info,
            "result_sets": sets,
            "result_location": location if sets else None,
            "result_preview": _preview(outcome.result_sets[0]) if sets else None,
        }
        return job_store.transition(exec_id, ("Running",), "Succeed", fields)


def _preview(document: ResultSet) -> dict[str, Any] | None:
    rows = document["rows"][: engine_config.PREVIEW_ROWS]
    while rows and len(repr(rows)) > PREVIEW_MAX_CHARS:
        rows = rows[: len(rows) // 2]
    return {
        "metadata": document["metadata"],
        "rows": rows,
        "total_rows": int(document.get("total_rows", len(document["rows"]))),
        "truncated": bool(document.get("truncated")) or len(rows) < int(document.get("total_rows", len(rows))),
    }


class Heartbeat(threading.Thread):
    """Writes ``heartbeat_at`` into the session item; sets ``superseded`` when the session moved on."""

    def __init__(self, session_id: str, generation: int, every: float) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.session_id, self.generation, self.every = session_id, generation, every
        self.stopping = threading.Event()
        self.superseded = threading.Event()
        self.stop_requested = threading.Event()

    def beat(self) -> None:
        """One heartbeat (also picks up ``stop_requested``)."""
        if not job_store.update_session_fields(self.session_id, self.generation, {"heartbeat_at": time.time()}):
            self.superseded.set()
            return
        session = job_store.get_session(self.session_id)
        if session and session.get("stop_requested"):
            self.stop_requested.set()

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                self.beat()
            except Exception as err:  # a transient store error: the next beat retries
                print(f"sparkgate engine: heartbeat failed: {err}", flush=True)


class SessionDriver:
    """Session mode: serve the session's queue on one SparkSession until idle, stopped or superseded."""

    def __init__(
        self, session_id: str, generation: int, spark: SparkSession | None = None, master: str | None = None
    ) -> None:
        self.session_id, self.generation = session_id, generation
        session = job_store.get_session(session_id)
        if session is None:
            raise SystemExit(f"sparkgate engine: no session {session_id}")
        self.config = engine_config.session_config(session.get("config"))
        self.idle_timeout = float(self.config["idle_timeout_seconds"])
        self._spark = spark
        self.master = master
        self.heartbeat = Heartbeat(session_id, generation, float(self.config["heartbeat_seconds"]))
        self.stop = threading.Event()
        self.retired = False

    def _update(self, fields: dict[str, Any]) -> bool:
        ok = job_store.update_session_fields(self.session_id, self.generation, fields)
        if not ok:
            self.heartbeat.superseded.set()
        return ok

    def _should_stop(self) -> bool:
        return self.stop.is_set() or self.heartbeat.superseded.is_set() or self.heartbeat.stop_requested.is_set()

    def serve(self) -> str:
        """Run until done; answers why the driver stopped (idle, stopped, superseded, error)."""
        reason = "error"
        try:
            spark = self._spark or build_spark(self.config, self.master, f"sparkgate-{self.session_id}")
            register_extensions(spark, lambda m: print(f"sparkgate engine: {m}", flush=True))
            executor = JobExecutor(spark, self.config)
            if not self._update({"state": "running", "heartbeat_at": time.time(), "driver_started_at": now_iso()}):
                return "superseded"
            self.heartbeat.start()
            self._replay_catalog(spark)
            reason = self._loop(executor)
            return reason
        finally:
            self.heartbeat.stopping.set()
            if not self.retired and not self.heartbeat.superseded.is_set():
                job_store.retire_session(
                    self.session_id,
                    self.generation,
                    {"state": "stopped", "stopped_at": now_iso(), "stop_reason": reason, "current_exec_id": None},
                )

    def _replay_catalog(self, spark: SparkSession) -> None:
        """A geo session's tables are temp views: a new driver loads them from the catalog first,
        whoever started it (a request, or the schedule tick replacing a dead driver)."""
        ref = self.config.get("geo_catalog")
        if not ref:
            return
        from chalicelib.engine.geo.ops import replay_catalog

        outcome = replay_catalog(spark, ref)
        for failed in outcome["failed"]:
            print(f"sparkgate engine: table {failed['name']} not replayed: {failed['error']}", flush=True)
        self._update({"catalog_replayed": outcome})

    def _loop(self, executor: JobExecutor) -> str:
        last_active = time.monotonic()
        while True:
            if self._should_stop():
                return "superseded" if self.heartbeat.superseded.is_set() else "stopped"
            if self._take_one(executor):
                last_active = time.monotonic()
                continue
            idle = time.monotonic() - last_active
            if idle >= self.idle_timeout:
                if self._retire_if_idle():
                    return "idle"
                last_active = time.monotonic()
                continue
            self.stop.wait(POLL_BUSY_SECONDS if idle < BUSY_WINDOW_SECONDS else POLL_IDLE_SECONDS)

    def _take_one(self, executor: JobExecutor) -> bool:
        for job in job_store.queued_jobs(self.session_id, limit=5):
            if job["status"] != "Scheduled":
                continue
            if not self._update({"current_exec_id": job["exec_id"]}):
                return False
            claimed = job_store.transition(
                job["exec_id"],
                ("Scheduled",),
                "Running",
                {"started_at": now_iso(), "driver_generation": self.generation, "driver_host": socket.gethostname()},
                dequeue=True,
            )
            if claimed is None:
                continue
            executor.run(claimed)
            # current_exec_id keeps naming the finished job until the next claim: the reaper only
            # fails it while Running, so clearing it would be a write per job for nothing
            return True
        return False

    def _retire_if_idle(self) -> bool:
        """Stop when idle, unless a job slipped in while we were deciding (then keep serving)."""
        if not self._update({"state": "stopping"}):
            return False
        if any(j["status"] == "Scheduled" for j in job_store.queued_jobs(self.session_id, limit=5)):
            return not self._update({"state": "running"})
        self.retired = job_store.retire_session(
            self.session_id,
            self.generation,
            {"state": "stopped", "stopped_at": now_iso(), "stop_reason": "idle", "current_exec_id": None},
        )
        return True


def run_batch(exec_id: str, spark: SparkSession | None = None, master: str | None = None) -> str | None:
    """Batch mode: run job ``exec_id`` on a SparkSession of its own; answers its final status."""
    driver_id = engine_config.batch_driver_id(exec_id)
    job = job_store.get_job(exec_id)
    if job is None:
        raise SystemExit(f"sparkgate engine: no job {exec_id}")
    config = engine_config.session_config(job.get("session_config"))
    record = job_store.get_session(driver_id)
    generation = int(record["generation"]) if record else 1
    heartbeat = Heartbeat(driver_id, generation, float(config["heartbeat_seconds"]))
    status: str | None = None
    try:
        own = spark is None
        spark = spark or build_spark(config, master, f"sparkgate-batch-{exec_id}")
        register_extensions(spark)
        job_store.update_session_fields(driver_id, generation, {"state": "running", "heartbeat_at": time.time()})
        heartbeat.start()
        claimed = job_store.transition(
            exec_id,
            ("Scheduled",),
            "Running",
            {"started_at": now_iso(), "driver_generation": generation, "driver_host": socket.gethostname()},
            dequeue=True,
        )
        if claimed is not None:
            done = JobExecutor(spark, config).run(claimed)
            status = done["status"] if done else None
        if own:
            spark.stop()
        return status
    finally:
        heartbeat.stopping.set()
        job_store.retire_session(driver_id, generation, {"state": "stopped", "stopped_at": now_iso()})


def install_signal_handlers() -> None:
    """SIGTERM ends the driver like Ctrl-C: the running job is failed and the session retired."""

    def handle(signum: int, frame: object) -> None:
        raise SystemExit(f"sparkgate engine: signal {signum}")

    signal.signal(signal.SIGTERM, handle)
