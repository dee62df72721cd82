"""A Spark standalone cluster for the local stack (``SPARKGATE_CLUSTER=standalone``).

One master and ``SPARKGATE_CLUSTER_WORKERS`` (2) workers from the installed pyspark
(``spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker``); the stack points
every driver at it (``SPARKGATE_SPARK_MASTER=spark://...``). Executors run in the workers' JVMs'
children, never in a driver.

The fence (when the stack runs as root and the host allows namespaces, i.e. isolation ``uid+ns``):

- the cluster lives in a network namespace of its own (``ip netns add sparkgate-cluster-<pid>``)
  whose only address besides its loopback is the cluster address ``SPARKGATE_CLUSTER_ADDRESS``
  (``10.213.0.1``) on its ``lo``; master and workers bind their RPC ports to it, their web UIs to
  the namespace's own ``127.0.0.1`` (so no kernel reaches a UI, its kill links or executor logs);
- each kernel keeps its private network namespace and gets one veth link into the cluster
  namespace (``chalicelib.engine.sandbox``): a /32 route to the cluster address and nothing else,
  so a kernel reaches the cluster and no host port, stack service, other kernel or outside host;
  executors reach the kernels' drivers through the links (the cluster namespace has a /32 route
  back to each kernel);
- master, workers and so every executor run as one unprivileged uid (``SPARKGATE_CLUSTER_UID``,
  default the kernel uid base - 1), with an allow-listed environment (no platform credential) and
  ``<state dir>-cluster/work`` (theirs, 0700) as home and work dir; the folder itself, the daemons'
  logs (``logs/``) and the drivers' defaults (``driver-conf/``) are root's, so root never opens a
  path the cluster uid could have replaced.

Spark standalone runs every application's executors under the worker's uid: users' executors share
that uid and the cluster namespace with each other (docs/security.md says what that leaves open).
Without root or namespaces (or with ``SPARKGATE_KERNEL_NETWORK=host``) the cluster binds ``127.0.0.1``
(as the cluster uid when the stack is root, else as the stack's own user) and kernels reach it over the
host's loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ADDRESS = "10.213.0.1"
MASTER_PORT = 7077
START_SECONDS = 240.0
IP_PATHS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
#: host variables the cluster's daemons (and so the executors) may see; nothing else
PASSED_VARS = ("LANG", "LC_ALL", "TZ", "JAVA_HOME")


def tool(name: str) -> str:
    """The absolute path of a system tool (``ip``, ``nsenter``); ``RuntimeError`` when missing."""
    found = shutil.which(name, path=os.pathsep.join(IP_PATHS))
    if not found:
        raise RuntimeError(
            f"SPARKGATE_CLUSTER=standalone needs the {name!r} tool (apt-get install iproute2 util-linux)"
        )
    return found


def real_folder(path: Path, mode: int, owners: set[int]) -> None:
    """Create ``path`` (``mode``) or accept it as it is only when it is a real folder owned by one of
    ``owners``; a symlink or anything else there is refused (``RuntimeError``), never followed."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners:
        raise RuntimeError(f"{path} is not a folder of this stack (a symlink or another user's): refusing it")


def spark_home() -> Path:
    """The installed pyspark's folder (its ``bin/spark-class`` and ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ClusterPlan:
    """Where and how the cluster runs (from the ``SPARKGATE_CLUSTER_*`` settings)."""

    folder: Path  # root's: logs/, driver-conf/ and work/ (the cluster uid's)
    address: str = DEFAULT_ADDRESS
    netns: str | None = None  # the cluster's network namespace (fenced mode)
    uid: int | None = None  # the daemons' (and executors') uid; None: the stack's own
    workers: int = 2
    worker_cores: int = 4
    worker_memory: str = "2g"
    master_port: int = MASTER_PORT

    @property
    def work(self) -> Path:
        """The daemons' home and the executors' work dirs (the cluster uid's)."""
        return self.folder / "work"

    @property
    def master_url(self) -> str:
        """What the drivers connect to."""
        return f"spark://{self.address}:{self.master_port}"


def plan(state_dir: Path) -> ClusterPlan:
    """The cluster this host gets: fenced (own namespace, own uid) when the kernels are, else loopback."""
    from chalicelib.engine import sandbox

    folder = Path(os.environ.get("SPARKGATE_CLUSTER_DIR") or f"{state_dir.resolve()}-cluster")
    found = ClusterPlan(
        folder=folder,
        workers=sandbox.int_env("SPARKGATE_CLUSTER_WORKERS", 2),
        worker_cores=sandbox.int_env("SPARKGATE_CLUSTER_WORKER_CORES", 4),
        worker_memory=os.environ.get("SPARKGATE_CLUSTER_WORKER_MEMORY", "2g"),
    )
    if sandbox.isolated():
        found.uid = sandbox.int_env("SPARKGATE_CLUSTER_UID", sandbox.uid_base() - 1)
    host_network = os.environ.get("SPARKGATE_KERNEL_NETWORK", "private") == "host"
    if sandbox.isolated() and sandbox.namespaces_available() and not host_network:
        found.address = os.environ.get("SPARKGATE_CLUSTER_ADDRESS", DEFAULT_ADDRESS)
        found.netns = f"sparkgate-cluster-{os.getpid()}"
    else:
        found.address = "127.0.0.1"
        found.master_port = _free_port("127.0.0.1")
    return found


def daemon_env(p: ClusterPlan) -> dict[str, str]:
    """The whole environment of the master, the workers and (inherited) every executor."""
    from chalicelib.engine import sandbox

    env = {k: os.environ[k] for k in PASSED_VARS if k in os.environ}
    home = spark_home()
    env.update(
        {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(p.work),
            "SPARK_HOME": str(home),
            "SPARK_CONF_DIR": str(p.work / "conf"),
            "PYTHONPATH": str(sandbox.PROJECT_DIR),
            "PYSPARK_PYTHON": sys.executable,
            # the web UIs bind here: the cluster namespace's own loopback, which no kernel reaches
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_MASTER_OPTS": "-Dspark.ui.killEnabled=false -Dspark.master.rest.enabled=false",
            "SPARK_WORKER_OPTS": (
                "-Dspark.ui.killEnabled=false -Dspark.worker.cleanup.enabled=true "
                "-Dspark.worker.cleanup.appDataTtl=3600"
            ),
            "SPARKGATE_DATA_ROOTS": ":".join(sandbox.shared_roots()),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
    )
    return env


class StandaloneCluster:
    """Starts and stops the master and the workers (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.plan = plan(state_dir)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._netns_made = False

    # ---- the network ------------------------------------------------------------------------

    def _ip(self, *args: str) -> None:
        subprocess.run([tool("ip"), *args], check=True, capture_output=True, timeout=30)

    def _make_netns(self) -> None:
        p = self.plan
        assert p.netns is not None
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ip("netns", "del", p.netns)  # a leftover of a crashed stack with this pid
        self._ip("netns", "add", p.netns)
        self._netns_made = True
        self._ip("-n", p.netns, "link", "set", "lo", "up")
        self._ip("-n", p.netns, "addr", "add", f"{p.address}/32", "dev", "lo")

    # ---- the daemons ------------------------------------------------------------------------

    def _prepare_folder(self) -> None:
        """The cluster's folders, each a real folder (never a symlink): the folder itself (0711), its
        ``logs/`` (0700) and ``driver-conf/`` (0755) the stack's; ``work/`` and its sub-folders the
        cluster uid's (0700; only these folders are chowned, nothing found inside them)."""
        p = self.plan
        me = {os.geteuid()}
        p.folder.parent.mkdir(parents=True, exist_ok=True)
        for folder, mode in ((p.folder, 0o711), (p.folder / "logs", 0o700), (p.folder / "driver-conf", 0o755)):
            real_folder(folder, mode, me)
            os.chmod(folder, mode)
        owners = me | ({p.uid} if p.uid is not None else set())
        for folder in [p.work, p.work / "conf", *(p.work / f"worker-{i}" for i in range(p.workers))]:
            real_folder(folder, 0o700, owners)
            if p.uid is not None:
                os.chown(folder, p.uid, p.uid, follow_symlinks=False)

    def _launch(self, name: str, args: list[str]) -> None:
        p = self.plan
        command = [str(spark_home() / "bin" / "spark-class"), *args]
        if p.netns is not None:
            assert p.uid is not None
            nsenter = [tool("nsenter"), f"--net=/run/netns/{p.netns}", f"--setuid={p.uid}", f"--setgid={p.uid}", "--"]
            command = nsenter + command
            user: int | None = None
        else:
            user = p.uid
        log = p.folder / "logs" / f"{name}.log"
        self._logs.append(log)
        with open(log, "wb") as out:
            self.procs.append(
                subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=daemon_env(p),
                    cwd=str(p.work),
                    start_new_session=True,
                    user=user,
                    group=user,
                    extra_groups=[] if user is not None else None,
                )
            )

    def _wait_for(self, log: Path, text: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if text in log.read_text(errors="replace"):
                    return
            if any(proc.poll() is not None for proc in self.procs):
                break
            time.sleep(0.2)
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"the Spark standalone cluster did not start ({log.name}):\n{tail}")

    def start(self) -> str:
        """Bring the master and the workers up; answers the master URL (also set as the default master)."""
        from chalicelib.engine import sandbox

        p = self.plan
        if p.uid is not None:
            sandbox.prepare_host()  # the cluster's uid reaches the interpreter, the venv and the project
            sandbox._ensure_passwd_entry(p.uid, p.work)  # Hadoop's login needs a name for the uid
        self._prepare_folder()
        if p.netns is not None:
            self._make_netns()
        deadline = time.monotonic() + START_SECONDS
        ui_port = "0" if p.netns is None else "8080"
        master = ["org.apache.spark.deploy.master.Master", "--host", p.address, "--port", str(p.master_port)]
        self._launch("master", [*master, "--webui-port", ui_port])
        self._wait_for(self._logs[0], "I have been elected leader", deadline)
        for i in range(p.workers):
            worker = ["org.apache.spark.deploy.worker.Worker", "--host", p.address, "--port", "0", "--webui-port", "0"]
            offer = ["--cores", str(p.worker_cores), "--memory", p.worker_memory]
            self._launch(f"worker-{i}", [*worker, *offer, "--work-dir", str(p.work / f"worker-{i}"), p.master_url])
        for log in self._logs[1:]:
            self._wait_for(log, "Successfully registered with master", deadline)
        os.environ["SPARKGATE_SPARK_MASTER"] = p.master_url
        os.environ["SPARKGATE_CLUSTER_DRIVER_CONF"] = str(self._driver_conf())
        if p.netns is not None:
            os.environ["SPARKGATE_CLUSTER_NETNS"] = p.netns
            os.environ["SPARKGATE_CLUSTER_ADDRESS"] = p.address
        return p.master_url

    def _driver_conf(self) -> Path:
        """A ``spark-defaults.conf`` for the drivers (root-owned, world-readable; a session's own
        ``configs`` still win): small executors, a share of the cores, dynamic allocation (a driver
        without work holds no executor), no driver UI (executors of other users' jobs could reach
        it), shuffle partitions for a small cluster."""
        p = self.plan
        folder = p.folder / "driver-conf"
        cores = os.environ.get("SPARKGATE_CLUSTER_APP_CORES", "2")
        defaults = {
            "spark.executor.memory": os.environ.get("SPARKGATE_CLUSTER_EXECUTOR_MEMORY", "512m"),
            "spark.executor.cores": "1",
            "spark.cores.max": cores,
            # idle drivers (warm pool, idle sessions) hold no executors: they come with work and go 60 s after
            "spark.dynamicAllocation.enabled": "true",
            "spark.dynamicAllocation.shuffleTracking.enabled": "true",
            "spark.dynamicAllocation.shuffleTracking.timeout": "60s",
            "spark.dynamicAllocation.executorIdleTimeout": "60s",
            "spark.dynamicAllocation.minExecutors": "0",
            "spark.dynamicAllocation.initialExecutors": "0",
            "spark.dynamicAllocation.maxExecutors": cores,
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.executorEnv.PYTHONPATH": str(daemon_env(p)["PYTHONPATH"]),
        }
        text = "".join(f"{key} {value}\n" for key, value in defaults.items())
        conf = folder / "spark-defaults.conf"
        conf.write_text(text)
        os.chmod(conf, 0o644)
        return folder

    def describe(self) -> str:
        """One banner line."""
        p = self.plan
        fence = f"network namespace {p.netns}, uid {p.uid}" if p.netns else f"loopback, uid {p.uid or os.geteuid()}"
        return (
            f"sparkgate: Spark standalone cluster at {p.master_url}: {p.workers} workers x "
            f"{p.worker_cores} cores x {p.worker_memory} ({fence}; logs in {p.folder / 'logs'})"
        )

    def stop(self) -> None:
        """Stop the workers, then the master (their executors go with them), then drop the namespace."""
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self._kill_leftovers()
        if self._netns_made and self.plan.netns is not None:
            with contextlib.suppress(subprocess.CalledProcessError, RuntimeError):
                self._ip("netns", "del", self.plan.netns)

    def _kill_leftovers(self) -> None:
        """Executors are the workers' children in their own process groups: end any still in the namespace."""
        p = self.plan
        if p.netns is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError, RuntimeError, subprocess.TimeoutExpired):
            found = subprocess.run(
                [tool("ip"), "netns", "pids", p.netns], check=True, capture_output=True, timeout=10, text=True
            )
            for pid in found.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)


def wanted() -> bool:
    """Whether the stack should start a cluster (``SPARKGATE_CLUSTER=standalone``)."""
    value = os.environ.get("SPARKGATE_CLUSTER", "").strip().lower()
    if value in ("", "none", "off", "local"):
        return False
    if value != "standalone":
        raise RuntimeError(f"SPARKGATE_CLUSTER={value!r}: the local stack knows only 'standalone'")
    return True
