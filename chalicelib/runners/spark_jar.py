"""SPARK_JAR works on the local runner: ``spark-submit`` started in a sandbox, never as root.

The artefact supervisor (:mod:`chalicelib.runners.jar`, root, holds the platform credential) starts
``python -I -u chalicelib/runners/spark_jar_main.py <kernel arguments> -- <spark-submit line>``
exactly like an engine kernel (:mod:`chalicelib.engine.sandbox`: the owner's own uid, PID/mount/network
namespaces, rlimits, an allow-listed environment without credentials). The jar is handed over as an
open file (a link planted at the path after the work was checked cannot swap it; S3 uploads are
copied into an unlinked temp file first); the sandboxed side copies it into the run's own folder,
where spark-submit's local dirs, Ivy cache and JVM temp files go too, removed when the run ends.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from chalicelib.config import settings
from chalicelib.engine import sandbox
from chalicelib.records import JobRecord
from chalicelib.runners.base import RunnerError

SPARK_JAR_MAIN = sandbox.PROJECT_DIR / "chalicelib" / "runners" / "spark_jar_main.py"


def run_tmp(owner: str, exec_id: str) -> Path:
    """The run's own folder in the owner's area (made by the sandboxed side, removed after the run)."""
    return Path(sandbox.kernel_env(owner)["TMPDIR"]) / f"spark-jar-{exec_id}"


def spark_jar_env(owner: str, exec_id: str) -> dict[str, str]:
    """The sandboxed process's environment: a kernel's (no credentials) plus where Spark's files go."""
    env = sandbox.kernel_env(owner)
    tmp = str(run_tmp(owner, exec_id))
    env.update({"TMPDIR": tmp, "SPARK_LOCAL_DIRS": tmp, "_JAVA_OPTIONS": f"-Djava.io.tmpdir={tmp}"})
    return env


def submit_line(run: dict[str, Any], master: str, tmp: Path) -> list[str]:
    """spark-submit's arguments; ``{jar}`` stands for the copy the sandboxed side makes."""
    from chalicelib.runners.emr import check_java_class, check_step_args
    from chalicelib.runners.jar import spark_submit_path

    heap = sandbox.limits().jvm_heap_mb
    return [
        spark_submit_path(),
        "--master",
        master,
        "--driver-memory",
        f"{heap}m",
        "--driver-java-options",
        f"-Djava.io.tmpdir={tmp}",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        f"spark.local.dir={tmp}",
        "--conf",
        f"spark.jars.ivy={tmp / 'ivy'}",
        "--class",
        check_java_class(run.get("main_class")),  # a class name, never an option
        "{jar}",
        *check_step_args([str(a) for a in run.get("args") or []]),
    ]


def start(job: JobRecord, master: str) -> subprocess.Popen[str]:
    """Start the sandboxed spark-submit of ``job`` (its own process group); output on stdout."""
    from chalicelib import work_runs

    owner, exec_id = str(job["owner"]), str(job["exec_id"])
    line = submit_line(job["artefact_run"], master, run_tmp(owner, exec_id))
    uid = sandbox.owner_uid(owner)
    try:
        jar = work_runs.open_jar(work_runs.run_artefact(job["artefact_run"]))
    except (OSError, work_runs.RunError) as err:
        raise RunnerError(f"cannot open the jar: {err}") from err
    with jar:
        command = sandbox.kernel_command(jar.fileno(), owner, uid, settings().state_dir, main=SPARK_JAR_MAIN)
        return subprocess.Popen(
            [*command, "--", *line],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=spark_jar_env(owner, exec_id),
            pass_fds=(jar.fileno(),),
            cwd=str(sandbox.PROJECT_DIR),
            start_new_session=True,
        )
