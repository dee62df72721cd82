"""How a kernel (the SparkSession and the user's code) is fenced in on this machine.

The supervisor (trusted, holds the platform's credentials) starts each kernel with
:func:`kernel_command` and :func:`kernel_env`. The command runs ``kernel_main.py`` as root with
``python -I`` (no environment-driven imports, no current-directory ``sys.path``), which calls
:func:`enter` before anything else is imported. ``enter``, still root:

1. new PID, mount and network namespaces (``unshare``); the next process is PID 1 there, a
   reaper: when it ends the kernel ends with every process it left behind, and
   ``/proc`` shows only the kernel's own processes;
2. the state dir is covered by an empty read-only tmpfs; only ``lo`` is up (no route to the
   stack's ports, the embedded AWS, other kernels' Spark ports or any other host);
3. rlimits (memory per process, processes of the uid, CPU seconds, file size, open files, no core);
4. the user's own area (``user_files.user_area``) exists, owned by the kernel uid, mode 0700;
5. groups dropped, gid and uid set to the user's own numeric ids, ``PR_SET_NO_NEW_PRIVS``,
   ``PR_SET_PDEATHSIG`` (the kernel dies with its supervisor), umask 077, cwd = the area.

Isolation modes (:func:`isolation_mode`): ``uid+ns`` (root: all of the above), ``uid`` (root, but the
namespaces are refused by this host: uids, rlimits and the environment still apply), ``none``
(not root: the kernel runs as the stack's own user with a clean environment; users are NOT
isolated from each other, which the stack says at start). Set ``SPARKGATE_ISOLATION=none`` to
choose ``none`` on purpose. No pyspark and no boto3 here: this runs before the kernel imports them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import functools
import os
import resource
import signal
import socket
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from chalicelib.config import data_roots_from_env
from chalicelib.user_files import user_area, user_root

PROJECT_DIR = Path(__file__).resolve().parents[2]
KERNEL_MAIN = PROJECT_DIR / "chalicelib" / "engine" / "kernel_main.py"
DEFAULT_UID_BASE = 200_000

_CLONE_NEWNS, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 1, 2, 4, 8, 32, 4096
_MS_REC, _MS_PRIVATE = 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1

#: Host variables a kernel may see; everything else (credentials, endpoints, passwords) is dropped.
PASSED_VARS = ("LANG", "LC_ALL", "TZ", "JAVA_HOME", "SPARK_HOME", "SPARKGATE_SPARK_MASTER", "SPARKGATE_STAGE")


@dataclass(frozen=True)
class KernelLimits:
    """What one kernel may use (each from a ``SPARKGATE_KERNEL_*`` variable)."""

    memory_mb: int  # resident memory of the whole kernel (JVM, Python, workers); the supervisor enforces it
    processes: int  # processes and threads of the user's uid (RLIMIT_NPROC)
    cpu_seconds: int  # CPU time of each process (RLIMIT_CPU)
    file_mb: int  # largest file a kernel may write (RLIMIT_FSIZE)
    open_files: int  # RLIMIT_NOFILE

    @property
    def jvm_heap_mb(self) -> int:
        """The Spark driver's heap: half the quota, the rest is for the JVM's own, Python and workers."""
        return max(256, self.memory_mb // 2)


def int_env(name: str, default: int) -> int:
    """An integer setting from the environment (``default`` when unset or not a number)."""
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def limits() -> KernelLimits:
    """The configured kernel limits."""
    return KernelLimits(
        memory_mb=int_env("SPARKGATE_KERNEL_MEMORY_MB", 4096),
        processes=int_env("SPARKGATE_KERNEL_PROCESSES", 2048),
        cpu_seconds=int_env("SPARKGATE_KERNEL_CPU_SECONDS", 6 * 3600),
        file_mb=int_env("SPARKGATE_KERNEL_FILE_MB", 4096),
        open_files=int_env("SPARKGATE_KERNEL_OPEN_FILES", 8192),
    )


def uid_base() -> int:
    """The first numeric uid handed to a user's kernels (``SPARKGATE_KERNEL_UID_BASE``)."""
    return int_env("SPARKGATE_KERNEL_UID_BASE", DEFAULT_UID_BASE)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def namespaces_available() -> bool:
    """Whether this host lets root create PID, mount and network namespaces (probed in a child)."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only reports through its exit code
        code = 0 if _libc().unshare(_CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET) == 0 else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def isolation_mode() -> str:
    """``uid+ns``, ``uid`` or ``none: ...`` (see the module docstring)."""
    if os.environ.get("SPARKGATE_ISOLATION", "").lower() == "none":
        return "none: SPARKGATE_ISOLATION=none, users are NOT isolated from each other"
    if os.geteuid() != 0:
        return "none: the stack does not run as root, users are NOT isolated from each other"
    return "uid+ns" if namespaces_available() else "uid"


def isolated() -> bool:
    """True when kernels run under their users' own uids."""
    return not isolation_mode().startswith("none")


# ---- the supervisor's side ----------------------------------------------------------------------


def shared_roots() -> tuple[str, ...]:
    """The shared read-only data roots, absolute (``SPARKGATE_DATA_ROOTS``)."""
    return tuple(os.path.realpath(p) for p in data_roots_from_env())


def kernel_env(user_id: str) -> dict[str, str]:
    """The whole environment of a kernel: allow-listed host variables and the kernel's own."""
    area = user_area(user_id)
    venv_bin = str(Path(sys.executable).parent)
    env = {k: os.environ[k] for k in PASSED_VARS if k in os.environ}
    env.update(
        {
            "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(area),
            "TMPDIR": str(area / "tmp"),
            "USER": f"sparkgate-{user_id[:8]}",
            "LOGNAME": f"sparkgate-{user_id[:8]}",
            "PYTHONPATH": str(PROJECT_DIR),
            "PYTHONUNBUFFERED": "1",
            "PYSPARK_PYTHON": sys.executable,
            "SPARKGATE_DATA_ROOTS": ":".join(shared_roots()),
            "SPARKGATE_USER_ROOT": str(user_root()),
            "SPARKGATE_KERNEL_ROOTS": ":".join([*shared_roots(), str(area)]),
        }
    )
    if os.environ.get("SPARKGATE_KERNEL_NETWORK", "private") != "host":
        env.update({"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOCAL_HOSTNAME": "localhost"})
    if os.environ.get("SPARKGATE_CLUSTER_DRIVER_CONF"):  # the local cluster's driver defaults (local/cluster.py)
        env["SPARK_CONF_DIR"] = os.environ["SPARKGATE_CLUSTER_DRIVER_CONF"]
    env.setdefault("LANG", "C.UTF-8")
    return env


def kernel_command(fd: int, user_id: str, uid: int | None, state_dir: Path, main: Path = KERNEL_MAIN) -> list[str]:
    """The command line that starts ``main`` (a kernel; a Flink or SPARK_JAR entry that calls :func:`enter` the
    same way) on file ``fd`` (``uid`` None: no uid change)."""
    lim = limits()
    command = [sys.executable, "-I", "-u", str(main), "--fd", str(fd), "--user-id", user_id]
    command += ["--state-dir", str(state_dir.resolve()), "--memory-mb", str(lim.memory_mb)]
    command += ["--processes", str(lim.processes), "--cpu-seconds", str(lim.cpu_seconds)]
    command += ["--file-mb", str(lim.file_mb), "--open-files", str(lim.open_files)]
    if uid is not None:
        command += ["--uid", str(uid)]
        if namespaces_available():
            command.append("--namespaces")
            if os.environ.get("SPARKGATE_KERNEL_NETWORK", "private") == "host":
                command.append("--host-network")  # e.g. a cluster master the kernel must reach
            elif os.environ.get("SPARKGATE_CLUSTER_NETNS"):  # the local standalone cluster (local/cluster.py)
                command += ["--cluster-net", f"{os.environ['SPARKGATE_CLUSTER_NETNS']},{cluster_address()}"]
    return command


def cluster_address() -> str:
    """The address of the local standalone cluster inside its namespace (``SPARKGATE_CLUSTER_ADDRESS``)."""
    return os.environ.get("SPARKGATE_CLUSTER_ADDRESS", "10.213.0.1")


def kernel_address(pid: int) -> str:
    """A kernel's own address on its link to the cluster: 100.64.0.0/10 + its host pid (unique while it lives)."""
    return socket.inet_ntoa(struct.pack("!I", (100 << 24 | 64 << 16) + (pid & 0x3FFFFF)))


def _cluster_link(netns: str, cluster: str) -> str:
    """Give this process a network namespace of its own whose only way out is one veth link into the
    cluster's namespace, routed to the cluster address alone (no default route, no IPv6); answers
    this kernel's address on it. Root, before the PID namespace (``ip`` runs as a child here)."""
    import shutil
    import subprocess

    ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ip is None:
        raise OSError("the cluster link needs the 'ip' tool (iproute2)")
    _check(_libc().unshare(_CLONE_NEWNET), "unshare the network")
    pid = os.getpid()
    mine, theirs, address = f"sgk{pid}", f"sgh{pid}", kernel_address(pid)

    def run(*args: str) -> None:
        done = subprocess.run([ip, *args], capture_output=True, timeout=30, env={"PATH": "/usr/sbin:/usr/bin"})
        if done.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")

    run("link", "add", mine, "type", "veth", "peer", "name", theirs, "netns", netns)
    with contextlib.suppress(OSError):  # no IPv6 on the link (no link-local path to the cluster's wildcards)
        Path(f"/proc/sys/net/ipv6/conf/{mine}/disable_ipv6").write_text("1")
    run("link", "set", "lo", "up")
    run("addr", "add", f"{address}/32", "dev", mine)
    run("link", "set", mine, "up")
    run("route", "add", f"{cluster}/32", "dev", mine)
    run("-n", netns, "link", "set", theirs, "up")
    run("-n", netns, "route", "add", f"{address}/32", "dev", theirs, "src", cluster)
    return address


@functools.cache
def prepare_host() -> list[str]:
    """Let kernel uids reach the interpreter, the venv, the project and the user root: add the
    search bit (``o+x``, never read) to every folder on those paths that lacks it. Answers the
    folders changed (the stack prints them)."""
    changed: list[str] = []
    targets = {Path(sys.executable).resolve().parent, Path(sys.base_prefix), Path(sys.prefix), PROJECT_DIR}
    for target in targets:
        for folder in [target, *target.parents]:
            try:
                mode = folder.stat().st_mode
            except OSError:
                continue
            if not mode & stat.S_IXOTH:
                os.chmod(folder, mode | stat.S_IXOTH)
                changed.append(str(folder))
    root = user_root()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # users reach their own area, and cannot list the others
    return sorted(set(changed))


def uid_has_files(uid: int) -> bool:
    """Whether an entry of the user root is owned by ``uid`` (an area left by an earlier table)."""
    with contextlib.suppress(FileNotFoundError), os.scandir(user_root()) as entries:
        return any(entry.stat(follow_symlinks=False).st_uid == uid for entry in entries)
    return False


def _host_ready() -> bool:
    """:func:`prepare_host` (reporting the folders it changed) when kernels are isolated; whether they are."""
    if not isolated():
        return False
    changed = prepare_host()
    if changed:
        print(f"sparkgate engine: search bit (o+x) added for kernel uids on: {', '.join(changed)}", flush=True)
    return True


def fresh_uid() -> int | None:
    """A kernel uid nobody has and no file of the user root belongs to (a warm pool kernel's), or
    None when kernels are not isolated."""
    from chalicelib.store import users as user_store

    return user_store.take_kernel_uid(uid_base(), uid_has_files) if _host_ready() else None


def owner_uid(owner: str) -> int | None:
    """The uid ``owner``'s kernels, jars and Flink jobs run under (taken once, kept), the host made
    ready for it (:func:`prepare_host`); None when kernels are not isolated."""
    from chalicelib.store import users as user_store

    return user_store.kernel_uid(owner, uid_base(), uid_has_files) if _host_ready() else None


# ---- the kernel's side (root until the end of enter) ---------------------------------------------


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _own_area(user_id: str, uid: int) -> Path:
    """The user's area, created or taken over for ``uid`` (a symlink in its place is refused)."""
    root = user_root()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)
    area = user_area(user_id)
    with contextlib.suppress(FileExistsError):
        os.mkdir(area, 0o700)
    info = os.lstat(area)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{area} is not a folder")
    os.chown(area, uid, uid, follow_symlinks=False)
    os.chmod(area, 0o700)
    tmp = area / "tmp"
    tmp.mkdir(exist_ok=True)
    if not stat.S_ISDIR(os.lstat(tmp).st_mode):
        raise OSError(f"{tmp} is not a folder")
    os.chown(tmp, uid, uid, follow_symlinks=False)
    return area


def _rlimits(args: argparse.Namespace) -> None:
    mib = 1024 * 1024
    for kind, value in (
        (resource.RLIMIT_NPROC, args.processes),
        (resource.RLIMIT_CPU, args.cpu_seconds),
        (resource.RLIMIT_FSIZE, args.file_mb * mib),
        (resource.RLIMIT_NOFILE, args.open_files),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_DATA, args.memory_mb * mib),
    ):
        resource.setrlimit(kind, (value, value))


def _passwd_line(uid: int, home: Path) -> str:
    return f"sparkgate-{uid}:x:{uid}:{uid}:sparkgate kernel:{home}:/usr/sbin/nologin\n"


def _has_passwd_entry(uid: int) -> bool:
    import pwd

    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _mount_view(libc: ctypes.CDLL, state_dir: str, uid: int | None, home: Path) -> None:
    """The kernel's view of the file system: its own ``/proc``, the state dir hidden under an empty
    read-only tmpfs, and (Hadoop needs a user name) ``/etc/passwd``/``/etc/group`` naming its uid."""
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
    if not os.path.isdir(state_dir):
        return
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(libc.mount(b"tmpfs", state_dir.encode(), b"tmpfs", flags, b"size=64k,mode=0755"), "mask the state dir")
    if uid is not None and not _has_passwd_entry(uid):
        for name, line in (("passwd", _passwd_line(uid, home)), ("group", f"sparkgate-{uid}:x:{uid}:\n")):
            view = os.path.join(state_dir, name)
            with open(f"/etc/{name}", encoding="utf-8") as host, open(view, "w", encoding="utf-8") as own:
                own.write(host.read() + line)
            os.chmod(view, 0o644)
            _check(libc.mount(view.encode(), f"/etc/{name}".encode(), None, _MS_BIND, None), f"bind /etc/{name}")
    remount = _MS_REMOUNT | _MS_RDONLY | flags
    _check(libc.mount(b"tmpfs", state_dir.encode(), b"tmpfs", remount, b"size=64k,mode=0755"), "seal the state dir")


def _ensure_passwd_entry(uid: int, home: Path) -> None:
    """Without namespaces, Hadoop's login still needs a name for the uid: one line in ``/etc/passwd``."""
    if _has_passwd_entry(uid):
        return
    with open("/etc/passwd", "a", encoding="utf-8") as passwd:
        fcntl.flock(passwd, fcntl.LOCK_EX)
        if not _has_passwd_entry(uid):
            passwd.write(_passwd_line(uid, home))


def _reap_until(child: int) -> int:
    """PID 1 of the kernel's namespace: reap everything; answer the kernel's exit code."""
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def parse(argv: list[str]) -> argparse.Namespace:
    """The kernel entry's command line (built by :func:`kernel_command`)."""
    parser = argparse.ArgumentParser(prog="kernel_main.py")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--namespaces", action="store_true")
    parser.add_argument("--host-network", action="store_true")
    parser.add_argument("--cluster-net", default=None)  # "<cluster netns>,<cluster address>"
    parser.add_argument("--state-dir", required=True)
    for name, default in (("memory-mb", 4096), ("processes", 2048), ("cpu-seconds", 21600)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--file-mb", type=int, default=4096)
    parser.add_argument("--open-files", type=int, default=8192)
    return parser.parse_args(argv)


def enter(argv: list[str]) -> argparse.Namespace:
    """Fence this process in (see the module docstring); returns in the kernel, as the user.

    Every failure before the uid is dropped ends the process: a kernel never runs user code as root.
    """
    args = parse(argv)
    libc = _libc()
    try:
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
        if args.uid is not None and args.uid <= 0:
            raise OSError("refusing to run a kernel as root")
        area = _own_area(args.user_id, args.uid) if args.uid is not None else user_area(args.user_id)
        if args.uid is None:
            area.mkdir(parents=True, exist_ok=True)
            (area / "tmp").mkdir(exist_ok=True)
        if args.namespaces:
            network = 0 if args.host_network else _CLONE_NEWNET
            if args.cluster_net and not args.host_network:
                address = _cluster_link(*args.cluster_net.split(",", 1))
                network = 0  # the namespace _cluster_link made is the kernel's
                os.environ.update({"SPARK_LOCAL_IP": address, "SPARK_LOCAL_HOSTNAME": address})
            _check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWPID | network), "unshare")
            child = os.fork()
            if child:  # the host-side process: wait for PID 1 of the new namespace
                os.close(args.fd)
                _, status = os.waitpid(child, 0)
                os._exit(os.waitstatus_to_exitcode(status))
            _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
            _mount_view(libc, args.state_dir, args.uid, area)
            if not args.host_network:
                _loopback_up()
            kernel = os.fork()
            if kernel:
                os.close(args.fd)
                os._exit(_reap_until(kernel))
        elif args.uid is not None:
            _ensure_passwd_entry(args.uid, area)
        _rlimits(args)
        if args.uid is not None:
            os.setgroups([])
            os.setresgid(args.uid, args.uid, args.uid)
            os.setresuid(args.uid, args.uid, args.uid)
            if os.getuid() == 0 or os.geteuid() == 0:
                raise OSError("the uid did not change")
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
        os.umask(0o077)
        os.chdir(area)
    except Exception as err:
        print(f"sparkgate kernel: sandbox setup failed: {err}", file=sys.stderr, flush=True)
        os._exit(70)
    return args
