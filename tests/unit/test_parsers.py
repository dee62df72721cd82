"""The pure parsers, directly: SQL statement splitting, run-time limits, SQL variables, /loadfile schemas."""

from __future__ import annotations

import pytest

from chalicelib.errors import BadRequest
from chalicelib.jobs import MAX_RUNTIME_SECONDS, runtime_limit
from chalicelib.work_runs import RunError, sql_variables, substitute_sql


def test_split_sql_keeps_semicolons_inside_quotes_backticks_and_drops_comments() -> None:
    from chalicelib.engine.statements import split_sql

    code = (
        "select ';' as a, \"x;y\" as b from `t;1`; -- a comment; not a statement\n"
        "/* block; comment */ select 'it\\'s; fine';\n\n ; select 3"
    )
    assert [s.strip() for s in split_sql(code)] == [
        "select ';' as a, \"x;y\" as b from `t;1`",
        "select 'it\\'s; fine'",
        "select 3",
    ]
    assert split_sql("  ;;  -- only a comment") == []
    assert [s.strip() for s in split_sql("select 1 -- trailing; comment")] == ["select 1"]


def _params(timeout: object) -> dict[str, object]:
    return {"configuration": {"runtime": {"sparkgate.job.timeout": timeout}}}


def test_runtime_limit() -> None:
    assert runtime_limit({}) == runtime_limit({"configuration": None}) > 0
    assert runtime_limit(_params("90s")) == 90 and runtime_limit(_params(5)) == 5
    assert runtime_limit({}, default=7) == 7
    for bad in ("soon", 0, MAX_RUNTIME_SECONDS + 1, "-3"):
        with pytest.raises(BadRequest):
            runtime_limit(_params(bad))


def test_sql_variables_and_substitution() -> None:
    assert sql_variables(["-Dcsv=/data/a.csv", "first", "-Dn = 3", "second"]) == {
        "csv": "/data/a.csv",
        "1": "first",
        "n": " 3",
        "2": "second",
    }
    got = substitute_sql("select * from ${t} where x > ${1}", ["-Dt=trips", "10"])
    assert got == "select * from trips where x > 10"
    assert substitute_sql("select '$notavar', ${t}", ["-Dt=1"]) == "select '$notavar', 1"
    with pytest.raises(RunError, match="not defined by extra_params: b, c"):
        substitute_sql("select ${c}, ${b}, ${a}", ["-Da=1"])


def test_schema_ddl() -> None:
    from chalicelib.models.geo import schema_ddl

    ddl = schema_ddl([{"VendorID": "string"}, {"fare": "float64"}, {"n": "int64"}, {"amount": "decimal(10, 2)"}])
    assert ddl == "`VendorID` string, `fare` double, `n` bigint, `amount` decimal(10,2)"
    assert schema_ddl(None) is None
    for bad in ([], [{"a": "int", "b": "int"}], [{"a`b": "int"}], [{"a": "uuid"}], [{"a": 3}], "a int"):
        with pytest.raises((BadRequest, ValueError)):
            schema_ddl(bad)
