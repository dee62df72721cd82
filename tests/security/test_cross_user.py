"""One user's code cannot touch another user's kernel or files, nor the product: alice's Job tries to
read bob's driver's /proc environ and memory (where bob keeps a secret), to kill it, to read and write
bob's own area, and to write the product's code. Each user's kernels run under their own uid."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.security.conftest import Outcome, Proc, Secrets, Tenants, alive, user_processes

READ_PROBE = r"""
import os, time
rep = {"matched": [], "environ": {}, "mem": {}}
deadline = time.monotonic() + P["seconds"]


def scan(pid):
    found, total = [], 0
    with open(f"/proc/{pid}/maps") as fh:
        regions = [line.split()[:2] for line in fh]
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for span, perms in regions:
            if not perms.startswith("rw"):
                continue
            lo, hi = (int(x, 16) for x in span.split("-"))
            if hi - lo > 256 << 20:
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            total += len(data)
            at = data.find(P["prefix"].encode())
            while at >= 0 and len(found) < 8:
                found.append(data[at : at + 48].decode(errors="replace"))
                at = data.find(P["prefix"].encode(), at + 1)
            if total > P["budget"] or time.monotonic() > deadline:
                break
    return {"bytes": total, "found": found}


def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as fh:
        return fh.read().decode(errors="replace")[:4000]


for pid, expected in P["targets"].items():
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        continue
    if cmdline != expected:  # not bob's process (another pid namespace, or the pid was reused)
        continue
    rep["matched"].append(pid)
    rep["environ"][pid] = attempt("environ", lambda: environ(pid))
    rep["mem"][pid] = attempt("mem", lambda: scan(pid))
report(rep)
"""


def _targets(procs: dict[int, Proc]) -> dict[str, str]:
    return {str(pid): proc.cmdline for pid, proc in procs.items()}


@pytest.fixture(scope="module")
def bob_processes(tenants: Tenants) -> dict[int, Proc]:
    procs = {pid: proc for pid, proc in user_processes(tenants.bob.user_id).items() if proc.state not in ("Z", "X")}
    assert procs, "bob's warm session has no process"
    return procs


@pytest.fixture(scope="module")
def read_attack(tenants: Tenants, bob_processes: dict[int, Proc]) -> tuple[dict[str, Any], Outcome]:
    params = {"targets": _targets(bob_processes), "prefix": "BOB-MEM-", "budget": 600 << 20, "seconds": 40}
    return tenants.alice.probe(READ_PROBE, params, timeout=180)


def test_each_user_runs_under_an_own_uid(tenants: Tenants) -> None:
    alice_uid = tenants.alice.probe("import os\nreport({'uid': os.getuid()})")[0]["uid"]
    bob_uid = tenants.bob_warmup.probe()["uid"]
    assert alice_uid != 0 and bob_uid != 0, (alice_uid, bob_uid)
    assert alice_uid != bob_uid


def test_another_users_driver_environ_cannot_be_read(read_attack: tuple[dict[str, Any], Outcome]) -> None:
    rep = read_attack[0]
    read = sorted(pid for pid, got in rep["environ"].items() if got["ok"])
    assert read == [], f"alice read the environ of bob's processes {read}"


def test_another_users_driver_memory_cannot_be_read(
    read_attack: tuple[dict[str, Any], Outcome], tenants: Tenants, platform_secrets: Secrets
) -> None:
    rep, outcome = read_attack
    read = {pid: got["value"]["bytes"] for pid, got in rep["mem"].items() if got["ok"] and got["value"]["bytes"]}
    assert tenants.bob_markers["mem"] not in outcome.text(), "alice found bob's secret in his driver's memory"
    assert read == {}, f"alice read bob's driver memory: {read} bytes"
    assert platform_secrets.found_in(outcome.text()) == []


AREA_PROBE = r"""
import os
bob = P["bob_area"]
private = os.path.join(bob, "private.txt")
own = P["own_area"]
os.makedirs(own, exist_ok=True)


def read_through_link():
    link = os.path.join(own, "sg-link-" + P["tag"])
    os.symlink(private, link)
    try:
        with open(link) as fh:
            return fh.read()
    finally:
        os.unlink(link)


def create():
    with open(os.path.join(bob, P["created"]), "x") as fh:
        fh.write("alice was here")
    return "created"


def append():
    os.close(os.open(private, os.O_WRONLY | os.O_APPEND))
    return "opened for writing"


rep = {
    "list": attempt("list", lambda: os.listdir(bob)),
    "read": attempt("read", lambda: open(private).read()),
    "read through a link": attempt("link", read_through_link),
    "append": attempt("append", append),
    "create": attempt("create", create),
}
report(rep)
"""


def test_another_users_area_can_be_neither_read_nor_written(tenants: Tenants) -> None:
    area = tenants.layout.area(tenants.bob.user_id)
    private = area / "private.txt"
    before = private.read_bytes()
    created = f"sg-from-alice-{secrets.token_hex(4)}"
    own = tenants.layout.area(tenants.alice.user_id)
    params = {"bob_area": str(area), "own_area": str(own), "tag": secrets.token_hex(4), "created": created}
    try:
        rep, outcome = tenants.alice.probe(AREA_PROBE, params)
        done = sorted(what for what, got in rep.items() if got["ok"])
        assert tenants.bob_markers["file"] not in outcome.text(), "alice read bob's private file"
        assert done == [], f"alice could {done} in bob's area"
        assert private.read_bytes() == before
        assert not (area / created).exists()
    finally:
        (area / created).unlink(missing_ok=True)


PRODUCT_PROBE = r"""
import os


def create(path):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return "created"


def open_for_writing(path):
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    return "opened for writing"


rep = {}
for path in P["create"]:
    rep["create " + path] = attempt("create", lambda p=path: create(p))
for path in P["append"]:
    rep["write " + path] = attempt("write", lambda p=path: open_for_writing(p))
rep["mkdir"] = attempt("mkdir", lambda: os.mkdir(P["mkdir"]) or "made")
report(rep)
"""


def test_the_product_tree_cannot_be_written(tenants: Tenants) -> None:
    tag = secrets.token_hex(4)
    site = Path(__import__("pyspark").__file__).parent.parent
    create = [ROOT / "chalicelib" / f"_sg_probe_{tag}.py", ROOT / f"_sg_probe_{tag}.txt", site / f"_sg_probe_{tag}.txt"]
    append = [ROOT / "chalicelib" / "__init__.py", ROOT / "app.py", site / "pyspark" / "__init__.py"]
    append += [ROOT / "chalicelib" / "engine" / "__main__.py", ROOT / "Makefile"]
    mkdir = ROOT / "chalicelib" / f"_sg_dir_{tag}"
    mtimes = {p: os.stat(p).st_mtime_ns for p in append}
    params = {"create": [str(p) for p in create], "append": [str(p) for p in append], "mkdir": str(mkdir)}
    try:
        rep = tenants.alice.probe(PRODUCT_PROBE, params)[0]
        done = sorted(what for what, got in rep.items() if got["ok"])
        assert done == [], f"user code could {done}"
        assert {p: os.stat(p).st_mtime_ns for p in append} == mtimes
    finally:
        for path in create:
            path.unlink(missing_ok=True)
        if mkdir.exists():
            mkdir.rmdir()


KILL_PROBE = r"""
import os, signal
rep = {}
for pid, expected in P["targets"].items():
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        continue
    if cmdline == expected:
        rep[pid] = attempt("kill", lambda p=int(pid): os.kill(p, signal.SIGKILL) or "killed")
report(rep)
"""


def test_another_users_driver_cannot_be_killed(tenants: Tenants, bob_processes: dict[int, Proc]) -> None:
    rep = tenants.alice.probe(KILL_PROBE, {"targets": _targets(bob_processes)})[0]
    killed = sorted(pid for pid, got in rep.items() if got["ok"])
    time.sleep(1)
    gone = sorted(pid for pid, proc in bob_processes.items() if not alive(proc))
    assert killed == [] and gone == [], f"alice killed bob's processes {killed} (gone: {gone})"
    # bob's kernel is the same one: his variables are still there
    after = tenants.bob.run("print('still here:', 'BOB_MEM' in globals())")
    assert after.status == "Succeed" and "still here: True" in after.log, after.log
