"""SQL alone reaches nothing: file relations on any path, reflection, writing directories, adding jars
or files, tables located in the state dir, binaryFile. Each is refused (the Job fails, its error names
what was refused) and nothing of what it aimed at shows up in the Job's log, error or result."""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import dataclass

import pytest

from tests.security.conftest import Secrets, Tenants


@dataclass(frozen=True)
class Case:
    sql: str
    names: str  # a regex the refusal's message must match (case-insensitive): it names what was refused


def _cases(tenants: Tenants) -> dict[str, Case]:
    state = tenants.stack.state_dir
    keyfile = state / "jwt-keys.json"
    jars = sorted(glob.glob(os.path.join(os.path.dirname(__import__("pyspark").__file__), "jars", "*.jar")))
    written = tenants.layout.shared / "sql-written"
    return {
        "text file relation": Case(f"select * from text.`{keyfile}`", r"text|file"),
        "json file relation": Case(f"select * from json.`{keyfile}`", r"json|file"),
        "java_method getenv": Case(
            "select java_method('java.lang.System', 'getenv', 'SPARKGATE_ADMIN_PASSWORD') as v", r"java_method"
        ),
        "reflect getenv": Case(
            "select reflect('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY') as v", r"reflect"
        ),
        "reflect getProperty": Case("select reflect('java.lang.System', 'getProperty', 'user.home') as v", r"reflect"),
        "insert overwrite directory": Case(
            f"insert overwrite directory '{written}' using text select 'pwned' as value", r"insert overwrite.*directory"
        ),
        "add jar": Case(f"add jar {jars[0]}", r"add\s+jar"),
        "add file": Case(f"add file {keyfile}", r"add\s+file"),
        "create table location": Case(
            f"create table sg_leak (value string) using text location '{state}'; select * from sg_leak", r"location"
        ),
        "binaryFile relation": Case(f"select cast(content as string) as c from binaryFile.`{keyfile}`", r"binaryfile"),
        "binaryFile view": Case(
            f"create temporary view sg_bin using binaryFile options (path '{keyfile}'); "
            "select cast(content as string) as c from sg_bin",
            r"binaryfile|jwt-keys\.json",  # the source, or the path it was pointed at
        ),
    }


CASES = [
    "text file relation",
    "json file relation",
    "java_method getenv",
    "reflect getenv",
    "reflect getProperty",
    "insert overwrite directory",
    "add jar",
    "add file",
    "create table location",
    "binaryFile relation",
    "binaryFile view",
]


@pytest.mark.parametrize("name", CASES)
def test_entrance_sql_is_refused_and_leaks_nothing(name: str, tenants: Tenants, platform_secrets: Secrets) -> None:
    case = _cases(tenants)[name]
    written = tenants.layout.shared / "sql-written"
    try:
        outcome = tenants.alice.run(case.sql, "sql", timeout=120)
        assert platform_secrets.found_in(outcome.text()) == [], f"{name}: leaked"
        assert outcome.status == "Failed", f"{name} was not refused: {outcome.status} {str(outcome.results)[:300]}"
        assert re.search(case.names, outcome.error, re.I), f"{name}: the error does not name it: {outcome.error}"
        assert not written.exists(), "insert overwrite directory wrote into the shared root"
    finally:
        shutil.rmtree(written, ignore_errors=True)


@pytest.mark.parametrize("name", ["text file relation", "java_method getenv", "binaryFile relation"])
def test_geo_query_is_refused_and_leaks_nothing(name: str, tenants: Tenants, platform_secrets: Secrets) -> None:
    case = _cases(tenants)[name]
    status, answer = tenants.alice.geo("POST", "/query", {"scope": tenants.scope, "sql": case.sql})
    assert platform_secrets.found_in(str(answer)) == [], f"{name}: leaked"
    assert status == 400, f"{name} was not refused: {status} {str(answer)[:300]}"
    assert re.search(case.names, str(answer.get("message")), re.I), answer


def test_ordinary_sql_passes_the_guard(tenants: Tenants) -> None:
    outcome = tenants.alice.run(
        "select id, id * 2 as twice, upper('ok') as word from range(3) where id > 0 order by id", "sql"
    )
    assert outcome.status == "Succeed", outcome.error
    assert outcome.rows() == [[1, 2, "OK"], [2, 4, "OK"]]
