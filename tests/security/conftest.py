"""The hostile-tenant suite's shared set-up: ONE real local stack for the whole suite, three tenants.

Layout on disk (a world-traversable temp folder, so kernels under their own uids can reach what
they are meant to reach):

- ``shared/``: the only shared data root (``SPARKGATE_DATA_ROOTS``), read-only for everyone: a
  small CSV, an icon, work artefacts, and a symlink ``statelink`` into the state dir (the trap a
  glob must not get through);
- ``users/``: ``SPARKGATE_USER_ROOT``; each user's own area is ``users/<user_id>/``;
- ``outside/``: world-readable files in no root at all (an image, for the ``icon_path`` oracle);
- ``state/``: the stack's state dir (created by the stack itself).

Tenants: ``alice`` (the attacker in most tests), ``bob`` (the victim: his warm session holds a
secret in memory, his area holds private files, his uploads hold a private SQL file) and ``carol``
(the limits tests, so a memory hog or fork bomb hurts only her session). Everything a user runs goes
through the public HTTP routes; the harness itself is trusted (it reads the state dir and the
embedded AWS with the platform credential to set up and to check that nothing changed).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import ROOT
from tests.e2e.stack import ADMIN, StackProcess

BASE = "/api/rest_j/v1"
FINAL = ("Succeed", "Failed", "Cancelled", "Timeout")
TASK_FINAL = (0, 3, 4, 5)  # works' task status: succeeded, failed, cancelled, timed out
PROBE_TAG = "SGPROBE"
TABLE = "sparkgate"
BUCKET = "sparkgate"
REGION = "us-east-1"
#: what the suite starts the stack with (small limits so the limits tests are quick)
KERNEL_MEMORY_MB = 2048
KERNEL_PROCESSES = 768
MAX_SESSIONS_PER_USER = 3
MAX_ACTIVE_JOBS_PER_USER = 8
#: the credential the stack is handed in its environment (today the stack uses it as the platform's)
ENV_ACCESS_KEY = "SGENVKEY" + secrets.token_hex(6).upper()
ENV_SECRET_KEY = "sg-env-secret-" + secrets.token_hex(16)

# Code run in every probe before its own: report(obj) prints obj as JSON in log-line-sized chunks.
PRELUDE = """\
import json as _sg_json


def report(obj):
    text = _sg_json.dumps(obj, default=repr, sort_keys=True)
    parts = [text[i : i + 6000] for i in range(0, len(text), 6000)] or [""]
    for i, part in enumerate(parts):
        print("{tag} %d %d %s" % (i, len(parts), part), flush=True)


def attempt(what, fn):
    '''fn() -> {{"ok": True, "value": ...}} or {{"ok": False, "error": "<type>: <message>"}}'''
    try:
        return {{"ok": True, "value": fn()}}
    except BaseException as err:  # noqa: BLE001 - a probe reports whatever stopped it
        return {{"ok": False, "error": "%s: %s" % (type(err).__name__, str(err)[:300])}}


P = _sg_json.loads({params!r})
"""


def probe_code(body: str, params: dict[str, Any] | None = None) -> str:
    """Python for a kernel: the prelude (``report``, ``attempt``, the parameters ``P``), then ``body``."""
    return PRELUDE.format(tag=PROBE_TAG, params=json.dumps(params or {})) + "\n" + body


def parse_probe(text: str) -> dict[str, Any]:
    """The object a probe ``report``-ed, reassembled from the log (or output) lines holding its chunks."""
    chunks: dict[int, str] = {}
    total = 0
    for line in text.split("\n"):
        at = line.find(PROBE_TAG + " ")
        if at < 0:
            continue
        index, count, part = [*line[at + len(PROBE_TAG) + 1 :].split(" ", 2), ""][:3]
        chunks[int(index)] = part
        total = int(count)
    assert total and len(chunks) == total, f"no complete probe report in:\n{text[-3000:]}"
    parsed: dict[str, Any] = json.loads("".join(chunks[i] for i in range(total)))
    return parsed


def tiny_png(color: tuple[int, int, int, int] = (255, 0, 0, 255), size: int = 4) -> bytes:
    """A small RGBA PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


# ---- the layout and the stack ---------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    base: Path
    shared: Path
    users: Path
    outside: Path
    state: Path

    def area(self, user_id: str) -> Path:
        return self.users / user_id


POINTS_CSV = "x,y,w\n" + "".join(f"{-73.99 + i * 0.001:.3f},{40.73 + i * 0.001:.3f},{i % 5}\n" for i in range(40))
ROLLUP_SQL = "select count(*) as n from range(${n});\nselect ${answer} as answer\n"


@pytest.fixture(scope="session")
def layout() -> Iterator[Layout]:
    base = Path(tempfile.mkdtemp(prefix="sg-security-", dir="/tmp"))
    base.chmod(0o755)
    lay = Layout(base, base / "shared", base / "users", base / "outside", base / "state")
    for folder in (lay.shared, lay.outside):
        folder.mkdir()
        folder.chmod(0o755)
    files = {
        lay.shared / "points.csv": POINTS_CSV.encode(),
        lay.shared / "icon.png": tiny_png((0, 128, 255, 255)),
        lay.shared / "rollup.sql": ROLLUP_SQL.encode(),
        lay.outside / "icon.png": tiny_png((0, 255, 0, 255)),
    }
    for path, data in files.items():
        path.write_bytes(data)
        path.chmod(0o644)
    # a link out of the shared root: plain paths through it are refused today; globs must be too
    (lay.shared / "statelink").symlink_to(lay.state)
    yield lay
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(layout: Layout) -> Iterator[StackProcess]:
    """The real local stack, as ``make run`` starts it, once for the whole suite."""
    process = StackProcess(
        layout.state,
        {
            "SPARKGATE_DATA_ROOTS": str(layout.shared),
            "SPARKGATE_USER_ROOT": str(layout.users),
            "SPARKGATE_SPARK_MASTER": "local[1]",
            "SPARKGATE_SCHEDULE_SECONDS": "2",
            "SPARKGATE_HEARTBEAT_SECONDS": "1",
            "SPARKGATE_KERNEL_MEMORY_MB": str(KERNEL_MEMORY_MB),
            "SPARKGATE_KERNEL_PROCESSES": str(KERNEL_PROCESSES),
            "SPARKGATE_MAX_SESSIONS_PER_USER": str(MAX_SESSIONS_PER_USER),
            "SPARKGATE_MAX_ACTIVE_JOBS_PER_USER": str(MAX_ACTIVE_JOBS_PER_USER),
            "AWS_ACCESS_KEY_ID": ENV_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": ENV_SECRET_KEY,
        },
    )
    process.start(timeout=180)
    yield process
    try:
        process.stop(timeout=60)
    finally:
        # what the stack printed, for whoever reads a failure (the temp folder goes away)
        with contextlib.suppress(OSError):
            Path(tempfile.gettempdir(), "sg-security-stack.log").write_text("".join(process.output))
        # drivers the stack left behind (it should leave none) must not outlive the suite
        for pid in descendants({process.proc.pid} if process.proc else set()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def ws_endpoint(stack: StackProcess) -> str:
    """The local ``@connections`` API's URL, as the stack printed it."""
    for line in stack.output:
        found = re.search(r"@connections API on (\S+)", line)
        if found:
            return found.group(1).rstrip("/")
    raise AssertionError("the stack did not print its @connections endpoint:\n" + "".join(stack.output))


# ---- the trusted side: the platform's own view of the embedded AWS and the state dir ----------------


def _credential_files(state: Path) -> list[tuple[str, str]]:
    found = []
    for path in sorted(state.iterdir()) if state.is_dir() else []:
        if not path.is_file() or path.stat().st_size > 64 * 1024:
            continue
        with contextlib.suppress(ValueError, UnicodeDecodeError, OSError):
            doc = json.loads(path.read_text())
            if isinstance(doc, dict) and doc.get("aws_access_key_id") and doc.get("aws_secret_access_key"):
                found.append((str(doc["aws_access_key_id"]), str(doc["aws_secret_access_key"])))
    return found


class Platform:
    """The harness's (trusted) access to the stack's embedded AWS, signed with the platform credential."""

    def __init__(self, stack: StackProcess) -> None:
        self.stack = stack
        self.endpoint = (stack.state_dir / "aws-endpoint").read_text().strip()
        self.credentials = [*_credential_files(stack.state_dir), (ENV_ACCESS_KEY, ENV_SECRET_KEY)]
        self._working: tuple[str, str] | None = None

    def _session(self) -> Any:
        import boto3

        if self._working is None:
            last: Exception | None = None
            for key_id, secret in self.credentials:
                candidate = boto3.session.Session(
                    aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=REGION
                )
                try:
                    candidate.client("dynamodb", endpoint_url=self.endpoint).describe_table(TableName=TABLE)
                except Exception as err:
                    last = err
                    continue
                self._working = (key_id, secret)
                break
            else:
                raise AssertionError(f"the harness cannot reach the embedded AWS with any credential: {last}")
        key_id, secret = self._working
        return boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=REGION)

    @property
    def credential(self) -> tuple[str, str]:
        self._session()
        assert self._working is not None
        return self._working

    def client(self, service: str) -> Any:
        return self._session().client(service, endpoint_url=self.endpoint)

    def table(self) -> Any:
        return self._session().resource("dynamodb", endpoint_url=self.endpoint).Table(TABLE)

    def item(self, pk: str, sk: str) -> dict[str, Any] | None:
        got: dict[str, Any] | None = self.table().get_item(Key={"pk": pk, "sk": sk}, ConsistentRead=True).get("Item")
        return got

    def user(self, username: str) -> dict[str, Any]:
        record = self.item(f"USER#{username}", "USER")
        assert record is not None, f"no user {username}"
        return record

    def put_object(self, key: str, data: bytes) -> None:
        self.client("s3").put_object(Bucket=BUCKET, Key=key, Body=data)

    def object_exists(self, key: str) -> bool:
        try:
            self.client("s3").head_object(Bucket=BUCKET, Key=key)
        except Exception:
            return False
        return True

    def connection_ids(self, user_id: str) -> list[str]:
        from boto3.dynamodb.conditions import Key

        answer = self.table().query(IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq(f"USERCONNS#{user_id}"))
        return [str(item["pk"]).removeprefix("CONN#") for item in answer.get("Items", [])]


@pytest.fixture(scope="session")
def platform(stack: StackProcess) -> Platform:
    return Platform(stack)


@dataclass
class Secrets:
    """Platform secrets (values) no user-visible output may ever contain."""

    values: dict[str, str] = field(default_factory=dict)

    def found_in(self, text: str) -> list[str]:
        """Names of the secrets that appear in ``text``."""
        return sorted(name for name, value in self.values.items() if value and value in text)


def jwt_keys(state: Path) -> dict[str, str]:
    doc = json.loads((state / "jwt-keys.json").read_text())
    keys: dict[str, str] = doc["keys"]
    return keys


@pytest.fixture(scope="session")
def platform_secrets(stack: StackProcess, tenants: Tenants) -> Secrets:
    """Read after the tenants logged in (the JWT key file exists by then)."""
    values = {"SPARKGATE_ADMIN_PASSWORD": ADMIN[1], "env AWS_SECRET_ACCESS_KEY": ENV_SECRET_KEY}
    for i, (_, secret) in enumerate(_credential_files(stack.state_dir)):
        values[f"platform AWS secret #{i}"] = secret
    keys_file = stack.state_dir / "jwt-keys.json"
    for kid, key in jwt_keys(stack.state_dir).items():
        values[f"JWT key {kid}"] = key
    raw = keys_file.read_bytes()
    values["jwt-keys.json (base64)"] = base64.b64encode(raw).decode()
    values["jwt-keys.json (text)"] = raw.decode()
    for name in ("bob", "alice", "carol", ADMIN[0]):  # the password hashes of the snapshot
        with contextlib.suppress(Exception):
            values[f"password hash of {name}"] = str(tenants.platform.user(name)["password_hash"])
    return Secrets(values)


# ---- tenants: users driven over the public routes ---------------------------------------------------


@dataclass
class Outcome:
    """What a user can learn about one Job through the entrance routes."""

    exec_id: str
    task_id: int
    status: str
    log: str
    error: str
    results: list[dict[str, Any]]
    seconds: float = 0.0

    def text(self) -> str:
        """Everything the user sees: log, error and every result set."""
        return "\n".join([self.log, self.error, json.dumps(self.results)])

    def probe(self) -> dict[str, Any]:
        return parse_probe(self.log)

    def rows(self, index: int = 0) -> list[list[Any]]:
        """The rows of the ``index``-th table result set (a Python Job's printed output, a TEXT set, comes
        before its tables, as Linkis writes it)."""
        tables = [r for r in self.results if r.get("type") != "1"]
        rows: list[list[Any]] = tables[index]["fileContent"]
        return rows


class Tenant:
    """One user: a token and the public routes."""

    def __init__(self, stack: StackProcess, username: str, user_id: str, password: str) -> None:
        self.stack, self.username, self.user_id, self.password = stack, username, user_id, password
        self.token = stack.login(username, password)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, answer, _ = self.stack.call(method, path, body, self.token)
        return status, answer

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert status in (200, 201) and answer.get("status", 0) in (0, "success"), (path, status, answer)
        return answer.get("data", answer)

    # -- the entrance ---------------------------------------------------------------------------

    def submit(self, code: str, run_type: str = "python", timeout_s: int | None = None) -> tuple[str, int]:
        params: dict[str, Any] = {}
        if timeout_s:
            params = {"configuration": {"runtime": {"sparkgate.job.timeout": timeout_s}}}
        body = {"executionCode": code, "runType": run_type, "executeApplicationName": "spark", "params": params}
        data = self.ok("POST", f"{BASE}/entrance/execute", body)
        return str(data["execID"]), int(data["taskID"])

    def status(self, exec_id: str) -> str:
        status: str = self.ok("GET", f"{BASE}/entrance/{exec_id}/status")["status"]
        return status

    def wait(self, exec_id: str, timeout: float = 240, statuses: tuple[str, ...] = FINAL) -> str:
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            status = self.status(exec_id)
            if status in statuses or time.monotonic() >= deadline:
                return status
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def kill(self, exec_id: str) -> None:
        self.call("GET", f"{BASE}/entrance/{exec_id}/kill")

    def log(self, exec_id: str) -> str:
        lines: list[str] = []
        cursor = 0
        while True:
            got = self.ok("GET", f"{BASE}/entrance/{exec_id}/log?fromLine={cursor}&size=10000")
            page = [line for line in got["log"][3].split("\n") if line]
            if not page or got["fromLine"] == cursor:
                return "\n".join(lines)
            lines += page
            cursor = got["fromLine"]

    def outcome(self, exec_id: str, task_id: int) -> Outcome:
        task = self.ok("GET", f"{BASE}/jobhistory/{task_id}/get")["task"]
        results = []
        location = task.get("resultLocation")
        if location and task["status"] == "Succeed":
            tree = self.ok("GET", f"{BASE}/filesystem/getDirFileTrees?path={quote(location)}")["dirFileTrees"]
            for child in tree.get("children") or []:
                # typed values: these tests compare what the code computed, not how Linkis renders it
                query = f"path={quote(child['path'])}&pageSize=50000&typed=true"
                results.append(self.ok("GET", f"{BASE}/filesystem/openFile?{query}"))
        return Outcome(exec_id, task_id, task["status"], self.log(exec_id), str(task.get("errDesc") or ""), results)

    def run(self, code: str, run_type: str = "python", timeout: float = 240, timeout_s: int | None = None) -> Outcome:
        """Submit, wait for the end (bounded), answer everything the user can read about the Job."""
        started = time.monotonic()
        exec_id, task_id = self.submit(code, run_type, timeout_s)
        status = self.wait(exec_id, timeout)
        if status not in FINAL:
            self.kill(exec_id)
            raise AssertionError(f"job {exec_id} still {status} after {timeout:.0f} s:\n{self.log(exec_id)[-3000:]}")
        outcome = self.outcome(exec_id, task_id)
        outcome.seconds = time.monotonic() - started
        return outcome

    def probe(
        self, body: str, params: dict[str, Any] | None = None, timeout: float = 240
    ) -> tuple[dict[str, Any], Outcome]:
        """Run a probe as an entrance python Job; its report and the whole outcome."""
        outcome = self.run(probe_code(body, params), "python", timeout)
        assert outcome.status == "Succeed", f"probe job {outcome.status}: {outcome.error}\n{outcome.log[-3000:]}"
        return outcome.probe(), outcome

    # -- geo ------------------------------------------------------------------------------------

    def geo(self, method: str, path: str, body: Any = None, timeout: float = 240) -> tuple[int, Any]:
        """A geo call; a 202 (the Job outlasted the sync wait) is followed until the Job ends, then the
        (idempotent) call is repeated, as a client would."""
        status, answer = self.call(method, path, body)
        if status == 202:
            final = self.wait(str(answer["execID"]), timeout)
            assert final in FINAL, f"{path}: Job {answer['execID']} still {final}"
            status, answer = self.call(method, path, body)
        return status, answer

    # -- works ----------------------------------------------------------------------------------

    def run_work(
        self, category: str, work_directory: str, extra_params: list[str] | None = None, timeout: float = 240
    ) -> tuple[dict[str, Any], Outcome | None]:
        """Create a BATCH work, start a task, wait for it; the final task detail and its Job's outcome.

        A ``work_directory`` the works API refuses outright (400 when the work is made) answers a
        task-like ``{"status": 3, "error": <message>}`` and no outcome."""
        body = {
            "name": f"sec-{secrets.token_hex(4)}",
            "description": "security suite",
            "type": "BATCH",
            "category": category,
            "work_directory": work_directory,
            "extra_params": extra_params or [],
            # a ``once`` work with a directory is run by the schedule too (within a tick): paused, the
            # manual run below is its only run
            "paused": True,
        }
        status, answer = self.call("POST", "/api/v1/works", body)
        if status == 400 and "work_directory" in str(answer.get("msg")):
            # refused when the work is made: like a run that cannot start, status 3 with the reason
            return {"status": 3, "error": str(answer["msg"]), "refused_at": "create"}, None
        assert status == 201, answer
        work_id = answer["data"]["work_id"]
        status, answer = self.call("POST", f"/api/v1/works/{work_id}/tasks")
        assert status == 201, answer
        task = answer["data"]
        deadline = time.monotonic() + timeout
        while task["status"] not in TASK_FINAL:
            assert time.monotonic() < deadline, f"task {task['task_id']} still {task['status']}"
            time.sleep(0.5)
            status, answer = self.call("GET", f"/api/v1/tasks/{task['task_id']}")
            assert status == 200, answer
            task = answer["data"]
        outcome = None
        if task.get("exec_id") and task.get("job_task_id") is not None:
            outcome = self.outcome(str(task["exec_id"]), int(task["job_task_id"]))
        return task, outcome


@dataclass
class Tenants:
    stack: StackProcess
    layout: Layout
    platform: Platform
    alice: Tenant
    bob: Tenant
    carol: Tenant
    admin_user_id: str
    scope: str  # alice's geo scope, with the table ``points`` loaded from the shared root
    bob_markers: dict[str, str]  # what bob keeps private: in memory, in his area, in his uploads
    bob_warmup: Outcome


def _new_tenant(stack: StackProcess, admin_token: str, name: str) -> Tenant:
    password = f"{name}-pw-{secrets.token_hex(6)}"
    status, body, _ = stack.call("POST", "/api/v1/users", {"username": name, "password": password}, admin_token)
    assert status == 201, body
    return Tenant(stack, name, str(body["data"]["user_id"]), password)


BOB_WARMUP = """
import base64, os
BOB_MEM = P["mem"]  # stays in bob's namespace (and so in his kernel's memory)
bob_result_text = "result of bob: " + BOB_MEM
area = P["area"]
os.makedirs(area, exist_ok=True)
for name, text in P["files"].items():
    with open(os.path.join(area, name), "w") as fh:
        fh.write(text)
with open(os.path.join(area, "icon.png"), "wb") as fh:
    fh.write(base64.b64decode(P["png"]))
report({"uid": os.getuid(), "wrote": sorted(os.listdir(area))})
"""


@pytest.fixture(scope="session")
def tenants(stack: StackProcess, layout: Layout, platform: Platform) -> Tenants:
    """alice, bob and carol with warm entrance sessions; alice's geo scope with ``points`` loaded."""
    admin = stack.login()
    alice, bob, carol = (_new_tenant(stack, admin, name) for name in ("alice", "bob", "carol"))
    admin_user_id = str(platform.user(ADMIN[0])["user_id"])
    tag = secrets.token_hex(8)
    markers = {
        "mem": f"BOB-MEM-{tag}",
        "file": f"BOB-FILE-{tag}",
        "sql": f"BOB-SQL-{tag}",
        "csv": f"BOB-CSV-{tag}",
        "upload": f"BOB-UPLOAD-{tag}",
    }
    files = {
        "private.txt": markers["file"] + "\n",
        "private.sql": f"select '{markers['sql']}' as secret\n",
        "private.csv": f"secret\n{markers['csv']}\n",
        "private.py": f"print('{markers['sql']}')\n",
    }
    platform.put_object(f"uploads/{bob.user_id}/private.sql", f"select '{markers['upload']}' as secret\n".encode())
    platform.put_object(f"uploads/{bob.user_id}/private.csv", f"secret\n{markers['upload']}\n".encode())
    # warm the three sessions at once (each is a Spark driver start); alice's geo driver meanwhile
    params = {"mem": markers["mem"], "area": str(layout.area(bob.user_id)), "files": files}
    params["png"] = base64.b64encode(tiny_png((255, 0, 255, 255))).decode()
    bob_job = bob.submit(probe_code(BOB_WARMUP, params))
    warm = [(alice, alice.submit("print('alice ready')")), (carol, carol.submit("print('carol ready')"))]
    scope = _scope(alice)
    table = {"name": "points", "format": "csv", "path": str(layout.shared / "points.csv")}
    table |= {"options": {"header": "True"}, "schema": [{"x": "double"}, {"y": "double"}, {"w": "int"}]}
    status, answer = alice.geo("POST", "/loadfile", {"scope": scope, "tables": [table]})
    assert status == 200, answer
    for tenant, (exec_id, _) in warm:
        assert tenant.wait(exec_id) == "Succeed", tenant.log(exec_id)
    assert bob.wait(bob_job[0]) == "Succeed", bob.log(bob_job[0])
    warmup = bob.outcome(*bob_job)
    return Tenants(stack, layout, platform, alice, bob, carol, admin_user_id, scope, markers, warmup)


def _scope(tenant: Tenant) -> str:
    status, answer = tenant.call("POST", "/scope", {"scope": "sec"})
    assert status == 200, answer
    return str(answer["scope"])


# ---- host processes (read by the trusted harness, as root) -------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    uid: int
    state: str
    start: int
    cmdline: str


def processes() -> dict[int, Proc]:
    """Every process of the host, as /proc shows it to root."""
    out: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        out[int(entry)] = Proc(int(entry), int(fields[1]), uid, fields[0], int(fields[19]), cmdline.strip())
    return out


def descendants(roots: set[int], table: dict[int, Proc] | None = None) -> set[int]:
    """``roots`` and every process below them."""
    table = table if table is not None else processes()
    found = {pid for pid in roots if pid in table}
    grew = True
    while grew:
        grew = False
        for proc in table.values():
            if proc.ppid in found and proc.pid not in found:
                found.add(proc.pid)
                grew = True
    return found


def user_processes(user_id: str) -> dict[int, Proc]:
    """The processes running for ``user_id``: any whose command line names the user (its session driver,
    supervisor or kernel) and everything below them."""
    table = processes()
    roots = {p.pid for p in table.values() if user_id in p.cmdline}
    return {pid: table[pid] for pid in descendants(roots, table)}


def stack_tree(stack: StackProcess) -> dict[int, Proc]:
    table = processes()
    assert stack.proc is not None
    return {pid: table[pid] for pid in descendants({stack.proc.pid}, table)}


def alive(proc: Proc) -> bool:
    """The same process (pid and start time) still exists and is not a zombie."""
    now = processes().get(proc.pid)
    return now is not None and now.start == proc.start and now.state not in ("Z", "X")


def wait_until(predicate: Any, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


ROOT_DIR = ROOT


# Probe code that finds every HTTP service user code can reach on loopback: the listening sockets of
# /proc/net/tcp{,6} (in a private network namespace only the kernel's own), each asked ``GET /``.
DISCOVER = r"""
import os as _sg_os
import socket as _sg_socket
from concurrent.futures import ThreadPoolExecutor as _SgPool


def listening_ports():
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "0A":
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def speaks_http(port):
    try:
        with _sg_socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(1.5)
            sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return sock.recv(8).startswith(b"HTTP/")
    except OSError:
        return False


def http_endpoints(*env_names):
    ports = listening_ports()
    with _SgPool(16) as pool:
        found = [f"http://127.0.0.1:{p}" for p, ok in zip(ports, pool.map(speaks_http, ports)) if ok]
    named = [_sg_os.environ[n].rstrip("/") for n in env_names if _sg_os.environ.get(n)]
    return named + [e for e in found if e not in named], ports
"""
