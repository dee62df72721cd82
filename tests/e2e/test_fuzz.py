"""Schemathesis against the real local stack, from the generated OpenAPI document (issue 17).

Bounded for CI: every operation but the ones that start Spark drivers (listed in ``SKIPPED``, with why),
``EXAMPLES`` positive and ``EXAMPLES`` negative cases each with a fixed seed; at least ``MIN_REQUESTS``
requests. Authenticated as an ordinary user. Asserts: no 5xx, every status, content type, header and
body as documented (so every answer in its surface's envelope), no stack trace in a body. The figures
are printed and written to ``bench/results/fuzz.md`` when ``SPARKGATE_FUZZ_RECORD=1``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chalicelib import openapi
from chalicelib.geo import MAPS
from tests.conftest import ROOT
from tests.e2e.stack import StackProcess

SEED = 17
EXAMPLES = int(os.environ.get("SPARKGATE_FUZZ_EXAMPLES", "15"))
MIN_REQUESTS = 1000
#: Operations not fuzzed, and why. Everything else is.
SKIPPED = {
    "POST /api/rest_j/v1/entrance/execute": "starts a Spark driver per accepted submission",
    "POST /api/rest_j/v1/entrance/submit": "starts a Spark driver per accepted submission",
    "POST /api/v1/works/{work_id}/tasks": "starts a run (a Spark driver) of a work",
    "POST /api/v1/tasks/{task_id}/retry": "starts a run (a Spark driver) of a task",
    "GET /api/rest_j/v1/user/logout": "revokes the fuzzing user's own token",
    "POST /api/rest_j/v1/user/logout": "revokes the fuzzing user's own token",
    **{
        f"POST /{geo}": "runs in a scope's Spark driver"
        for geo in (
            "command",
            "session",
            "loadfile",
            "createtable",
            "query",
            *MAPS,
        )
    },
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
LEAKS = ("Traceback (most recent call last)", 'File "/', "site-packages/")

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    process = StackProcess(tmp_path_factory.mktemp("fuzz") / "state")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_fuzz_every_route(stack: StackProcess) -> None:
    token = stack.new_user("fuzzer")
    auth = {"Authorization": f"Token {token}"}
    schema = schemathesis.openapi.from_dict(openapi.app_document())
    session = requests.Session()
    statuses: Counter[int] = Counter()
    per_operation: Counter[str] = Counter()
    failures: list[str] = []
    unsatisfiable: list[str] = []
    other_methods = [0]
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [op for op in operations if f"{op.method.upper()} {op.path}" not in SKIPPED]
    passes: list[tuple[Any, GenerationMode, dict[str, str] | None]] = []
    existing: set[str] = set()
    for operation in fuzzed:
        passes += [(operation, GenerationMode.POSITIVE, None), (operation, GenerationMode.NEGATIVE, None)]
        if "{work_id}" in operation.path and operation.method.upper() != "OPTIONS":
            # the create -> get/patch/delete/tasks flow: the same operations on a work that exists
            work_id = _new_work(stack, token, operation.path)
            existing.add(work_id)
            passes.append((operation, GenerationMode.POSITIVE, {"work_id": work_id}))
    for operation, mode, path_parameters in passes:

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=False,
        )
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        def exercise(case: Any) -> None:
            key = f"{case.operation.method.upper()} {case.operation.path}"
            if (case.path_parameters or {}).get("work_id") in existing:
                key += " (existing work)"
            if case.method.upper() != case.operation.method.upper():
                # a method the route lacks: API Gateway's (and the local stack's) bare 403, not the app's
                other_methods[0] += 1
                return
            response = case.call(base_url=stack.url, session=session, headers=auth, timeout=30)
            statuses[response.status_code] += 1
            per_operation[key] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=auth)
                text = response.text
                leaked = [leak for leak in LEAKS if leak in text]
                assert not leaked, f"{key} leaked {leaked[0]!r}: {text[:300]}"
            except BaseException as err:  # schemathesis raises failure groups
                failures.append(f"{key} [{case.method} {case.formatted_path}] {response.status_code}: {err}"[:600])

        try:
            exercise()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            unsatisfiable.append(f"{operation.method.upper()} {operation.path}")  # nothing to make invalid
    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    summary = (
        f"seed {SEED}, {EXAMPLES} positive + {EXAMPLES} negative examples per operation: {total} requests over "
        f"{len(per_operation)} of {len(operations)} operations in {elapsed:.0f} s; statuses "
        + ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        + f"; {len(existing)} operations also fuzzed on an existing work (create -> get/patch/delete/tasks)"
        + f"; {len(failures)} failures; skipped {len(SKIPPED)}; {len(unsatisfiable)} operations have no invalid input"
    )
    print(summary)
    if os.environ.get("SPARKGATE_FUZZ_RECORD") == "1":
        _record(summary, per_operation, failures)
    assert not failures, "\n".join(failures[:20])
    assert not [code for code in statuses if code >= 500]
    assert total >= MIN_REQUESTS, summary


def _new_work(stack: StackProcess, token: str, path: str) -> str:
    name = f"fuzz-{len(path)}-{time.monotonic_ns()}"
    body = {"name": name, "description": "fuzzed", "type": "BATCH", "category": "SPARK_SQL", "paused": True}
    status, answer, _ = stack.call("POST", "/api/v1/works", body, token)
    assert status == 201, answer
    work_id: str = answer["data"]["work_id"]
    return work_id


def _record(summary: str, per_operation: Counter[str], failures: list[str]) -> None:
    lines = ["# Fuzzing the API (schemathesis, tests/e2e/test_fuzz.py)", "", summary, "", "| operation | requests |"]
    lines += ["|---|---|"] + [f"| `{key}` | {n} |" for key, n in sorted(per_operation.items())]
    lines += ["", "Skipped (they start Spark drivers or revoke the fuzzing user's token):", ""]
    lines += [f"- `{key}`: {why}" for key, why in sorted(SKIPPED.items())]
    if failures:
        lines += ["", "Failures:", ""] + [f"- {f}" for f in failures[:50]]
    Path(ROOT / "bench" / "results" / "fuzz.md").write_text("\n".join(lines) + "\n")
