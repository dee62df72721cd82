"""User code never holds a platform secret: not in its environment (entrance python, geo /command, a
PYSPARK work), not in the state dir (JWT keys, the embedded AWS snapshot, the platform credential,
driver logs), not in the stack's own processes (/proc environ and memory). Kernels run as the
user's own uid with no new privileges, in the user's own 0700 area."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest

from tests.e2e.stack import StackProcess
from tests.security.conftest import Outcome, Secrets, Tenants, parse_probe, probe_code, wait_until

#: variables no kernel may see, whatever their value
FORBIDDEN_VARS = ("SPARKGATE_ADMIN_PASSWORD", "SPARKGATE_WS_ENDPOINT", "AWS_ENDPOINT_URL", "SPARKGATE_JWT_SECRET_ARN")

ENV_PROBE = r"""
import os, re
rep = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups()}
rep["env"] = dict(os.environ)
rep["cwd"] = os.getcwd()
rep["home"] = os.path.expanduser("~")
with open("/proc/self/status") as fh:
    found = re.search(r"^NoNewPrivs:\s+(\d+)", fh.read(), re.M)
rep["no_new_privs"] = int(found.group(1)) if found else None
rep["jvm_env"] = attempt("jvm env", lambda: {str(k): str(v) for k, v in spark._jvm.java.lang.System.getenv().items()})
rep["spark_conf"] = attempt("spark conf", lambda: dict(spark.sparkContext.getConf().getAll()))
report(rep)
"""


def _env_problems(env: dict[str, str], endpoints: list[str]) -> list[str]:
    problems = [f"variable {name}" for name in env if name.startswith("AWS_") or name in FORBIDDEN_VARS]
    for name, value in env.items():
        problems += [f"{name} names the endpoint {url}" for url in endpoints if url and url in value]
    return problems


def _endpoints(stack: StackProcess) -> list[str]:
    from tests.security.conftest import ws_endpoint

    return [(stack.state_dir / "aws-endpoint").read_text().strip(), ws_endpoint(stack)]


def assert_no_secret_in_env(rep: dict[str, Any], text: str, stack: StackProcess, secrets: Secrets) -> None:
    endpoints = _endpoints(stack)
    problems = _env_problems(rep["env"], endpoints)
    if rep["jvm_env"]["ok"]:
        problems += [f"JVM {p}" for p in _env_problems(rep["jvm_env"]["value"], endpoints)]
    assert problems == [], problems
    assert secrets.found_in(text) == [], "platform secrets in what the user sees"


def assert_own_identity(rep: dict[str, Any], tenants: Tenants, user_id: str) -> None:
    area = tenants.layout.area(user_id)
    assert rep["uid"] != 0 and rep["euid"] != 0, f"user code runs as root (uid {rep['uid']})"
    assert rep["no_new_privs"] == 1, "PR_SET_NO_NEW_PRIVS is not set"
    assert os.path.realpath(rep["cwd"]) == os.path.realpath(area), rep["cwd"]
    assert os.path.realpath(rep["home"]) == os.path.realpath(area), rep["home"]
    info = os.stat(area)
    assert stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    assert info.st_uid == rep["uid"], (info.st_uid, rep["uid"])


@pytest.fixture(scope="module")
def entrance_env(tenants: Tenants) -> tuple[dict[str, Any], Outcome]:
    return tenants.alice.probe(ENV_PROBE)


def test_entrance_python_environment_holds_no_platform_secret(
    entrance_env: tuple[dict[str, Any], Outcome], tenants: Tenants, platform_secrets: Secrets
) -> None:
    rep, outcome = entrance_env
    assert_no_secret_in_env(rep, outcome.text(), tenants.stack, platform_secrets)


def test_entrance_python_runs_as_the_users_own_uid_in_the_users_own_area(
    entrance_env: tuple[dict[str, Any], Outcome], tenants: Tenants
) -> None:
    assert_own_identity(entrance_env[0], tenants, tenants.alice.user_id)


def test_geo_command_environment_holds_no_platform_secret(tenants: Tenants, platform_secrets: Secrets) -> None:
    status, answer = tenants.alice.geo("POST", "/command", {"scope": tenants.scope, "command": probe_code(ENV_PROBE)})
    assert status == 200, answer
    rep = parse_probe(str(answer["output"]))
    assert_no_secret_in_env(rep, str(answer), tenants.stack, platform_secrets)
    assert_own_identity(rep, tenants, tenants.alice.user_id)


def test_pyspark_work_environment_holds_no_platform_secret(tenants: Tenants, platform_secrets: Secrets) -> None:
    script = tenants.layout.shared / "probe_env.py"
    script.write_text(probe_code(ENV_PROBE))
    script.chmod(0o644)
    task, outcome = tenants.alice.run_work("PYSPARK", str(script))
    assert task["status"] == 0 and outcome is not None, task
    assert_no_secret_in_env(outcome.probe(), outcome.text(), tenants.stack, platform_secrets)
    assert_own_identity(outcome.probe(), tenants, tenants.alice.user_id)


def test_state_dir_is_root_only_and_key_files_are_0600(stack: StackProcess, tenants: Tenants) -> None:
    state = stack.state_dir
    info = os.stat(state)
    assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    keys = [state / "jwt-keys.json", *(p for p in state.iterdir() if "credential" in p.name)]
    for path in keys:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, (path, oct(os.stat(path).st_mode))


STATE_PROBE = r"""
import os
rep = {"read": {}, "list": {}}
for path in P["files"]:
    rep["read"][path] = attempt("read", lambda p=path: open(p, "rb").read(65536).decode("latin-1"))
for path in P["dirs"]:
    rep["list"][path] = attempt("list", lambda p=path: sorted(os.listdir(p)))
rep["spark"] = attempt("spark.read.text", lambda: [r.value for r in spark.read.text(P["files"][0]).collect()])
report(rep)
"""


@pytest.fixture(scope="module")
def state_probe(tenants: Tenants) -> tuple[dict[str, Any], Outcome, list[str]]:
    state = tenants.stack.state_dir
    assert wait_until(lambda: (state / "aws" / "table.jsonl").exists(), 15), "no snapshot was written"
    drivers = sorted((state / "drivers").glob(f"*{tenants.bob.user_id}*")) if (state / "drivers").is_dir() else []
    files = [state / "jwt-keys.json", state / "aws" / "table.jsonl", state / "aws-endpoint", state / "ws-url"]
    files += [p for p in state.iterdir() if "credential" in p.name] + drivers[:1]
    existing = [str(p) for p in files if p.exists()]
    dirs = [str(state), str(state / "aws"), str(state / "drivers")]
    rep, outcome = tenants.alice.probe(STATE_PROBE, {"files": existing, "dirs": dirs})
    return rep, outcome, existing


def test_state_dir_files_cannot_be_read_by_user_code(state_probe: tuple[dict[str, Any], Outcome, list[str]]) -> None:
    rep, _, existing = state_probe
    assert len(existing) >= 4, existing  # the key file, the snapshot, the endpoint file exist (as root sees)
    opened = sorted(path for path, got in rep["read"].items() if got["ok"])
    assert opened == [], f"user code read {opened}"
    assert not rep["spark"]["ok"], "spark.read.text read the JWT key file"


def test_state_dir_cannot_be_listed_by_user_code(state_probe: tuple[dict[str, Any], Outcome, list[str]]) -> None:
    """A listing may succeed on whatever covers the state dir in the kernel's view, but must show none
    of the real state dir's entries."""
    rep = state_probe[0]
    listed = {}
    for path, got in rep["list"].items():
        real = set(os.listdir(path)) if os.path.isdir(path) else set()
        shown = sorted(real & set(got["value"])) if got["ok"] else []
        if shown:
            listed[path] = shown
    assert listed == {}, f"user code listed the state dir's {listed}"


def test_nothing_of_the_state_dir_leaked(
    state_probe: tuple[dict[str, Any], Outcome, list[str]], platform_secrets: Secrets, tenants: Tenants
) -> None:
    text = state_probe[1].text()
    assert platform_secrets.found_in(text) == []
    assert tenants.bob_markers["mem"] not in text


PROC_PROBE = r"""
import os
names = set(P["names"])
rep = {"secret_vars": {}, "stack": {}}
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except Exception:
        continue
    for entry in raw.split(b"\0"):
        name, _, value = entry.decode(errors="replace").partition("=")
        if name in names:
            rep["secret_vars"].setdefault(pid, {})[name] = value
sp = str(P["stack_pid"])


def cmdline():
    with open(f"/proc/{sp}/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode(errors="replace")


def environ_size():
    with open(f"/proc/{sp}/environ", "rb") as fh:
        return len(fh.read())


def read_memory():
    with open(f"/proc/{sp}/maps") as fh:
        regions = [line.split()[:2] for line in fh]
    with open(f"/proc/{sp}/mem", "rb", buffering=0) as mem:
        total = 0
        for span, perms in regions:
            if not perms.startswith("r"):
                continue
            lo, hi = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(lo)
                total += len(mem.read(min(4096, hi - lo)))
            except OSError:
                continue
        return total


cmd = attempt("cmdline", cmdline)
rep["stack"]["is_stack"] = bool(cmd["ok"] and "chalicelib.local.stack" in cmd["value"])
if rep["stack"]["is_stack"]:
    rep["stack"]["environ"] = attempt("environ", environ_size)
    rep["stack"]["mem"] = attempt("mem", read_memory)
report(rep)
"""


def test_the_stacks_processes_environ_and_memory_are_out_of_reach(
    tenants: Tenants, platform_secrets: Secrets, stack: StackProcess
) -> None:
    assert stack.proc is not None
    names = [*FORBIDDEN_VARS, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    rep, outcome = tenants.alice.probe(PROC_PROBE, {"names": names, "stack_pid": stack.proc.pid})
    assert rep["secret_vars"] == {}, f"secret variables in the environ of processes {sorted(rep['secret_vars'])}"
    if rep["stack"]["is_stack"]:
        assert not rep["stack"]["environ"]["ok"], "user code read the stack's /proc/<pid>/environ"
        got = rep["stack"]["mem"]
        assert not (got["ok"] and got["value"]), "user code read the stack's memory"
    assert platform_secrets.found_in(outcome.text()) == []
