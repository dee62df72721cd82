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
from hypothesis.errors import Flaky, Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from chalicelib import openapi
from chalicelib.map_kinds import ROUTES
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
            *ROUTES,
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


@pytest.fixture(scope="module")
def tokens(stack: StackProcess) -> dict[str, str]:
    """Every test's user, made before any fuzzing: the per-route fuzz's bad ``/token`` logins trip the login
    limiter for 127.0.0.1 (as they must), after which not even the admin signs in from that address."""
    return {name: stack.new_user(name) for name in ("fuzzer", "stateful")}


def test_fuzz_every_route(stack: StackProcess, tokens: dict[str, str]) -> None:
    token = tokens["fuzzer"]
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


#: The stateful flows: schemathesis's state machine over the document's OpenAPI links (chalicelib/openapi.py
#: LINKS), each flow a machine of its own: a work's create -> get -> patch -> delete, and a Job's execute ->
#: status/progress -> log -> kill (the Jobs are real: the user's Spark session runs or kills them).
WORKS_FLOW = ("works_create_post", "works_get_get", "works_update_patch", "works_delete_delete")
JOBS_FLOW = (
    "entrance_execute_post",
    "entrance_status_get",
    "entrance_progress_get",
    "entrance_log_get",
    "entrance_kill_get",
)
STATEFUL = WORKS_FLOW + JOBS_FLOW
#: Scenarios per flow and steps per scenario (each scenario starts at the flow's create or execute).
SCENARIOS = int(os.environ.get("SPARKGATE_FUZZ_SCENARIOS", "40"))
#: The works flow gets more (they are cheap): most generated creates are refused (an unknown
#: work_directory or time zone, another user's id), and only a created work feeds the links.
WORKS_SCENARIOS = 4 * SCENARIOS
STEPS = 6
#: At most this many runs (seeds SEED, SEED + 1, ...) per flow to complete its scenarios.
MAX_RUNS = 20
#: Fields of a work create whose valid values the document cannot give (your own user id, a file that
#: exists in your uploads, an IANA zone name): dropped from generated creates so that creates succeed.
STATE_DEPENDENT = ("user_id", "work_directory", "timezone")
#: The stateful checks on top of CHECKS: a resource a link names is there, and gone once deleted.
STATEFUL_CHECKS = [*CHECKS, ensure_resource_availability, use_after_free]


class Tally:
    """What the stateful machines sent and were answered."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.per_operation: Counter[str] = Counter()
        self.linked: Counter[str] = Counter()  # answered < 400 for an id taken from an earlier answer
        self.failures: list[str] = []
        self.scenarios = 0
        self.restarts = 0  # runs Hypothesis stopped as Flaky (see _run_flow)


def _run_flow(stack: StackProcess, token: str, operation_ids: tuple[str, ...], scenarios: int, tally: Tally) -> None:
    auth = {"Authorization": f"Token {token}"}
    schema = schemathesis.openapi.from_dict(openapi.app_document()).include(operation_id=list(operation_ids))
    # valid requests only: the flows need creates that succeed; the per-route fuzz sends the invalid ones
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])

    @schema.hook("map_body")
    def _stateless_fields(ctx: Any, body: Any) -> Any:
        if ctx.operation.method.upper() == "POST" and isinstance(body, dict):
            return {key: value for key, value in body.items() if key not in STATE_DEPENDENT}
        return body

    session = requests.Session()

    class Flow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": stack.url, "session": session, "headers": auth, "timeout": 30}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            key = f"{case.operation.method.upper()} {case.operation.path}"
            tally.statuses[response.status_code] += 1
            tally.per_operation[key] += 1
            if case.path_parameters and response.status_code < 400:
                tally.linked[key] += 1  # these operations are no roots: their ids come from links
            try:
                case.validate_response(response, checks=STATEFUL_CHECKS, headers=auth, recorder=self.recorder)
                leaked = [leak for leak in LEAKS if leak in response.text]
                assert not leaked, f"{key} leaked {leaked[0]!r}: {response.text[:300]}"
            except BaseException as err:  # schemathesis raises failure groups
                tally.failures.append(
                    f"stateful {key} [{case.method} {case.formatted_path}] {response.status_code}: {err}"[:600]
                )

        def teardown(self) -> None:
            tally.scenarios += 1
            super().teardown()

    # The server's state is part of what a scenario draws (a rule runs only once a create answered), so
    # Hypothesis may find a replayed prefix drawing differently and stop with Flaky, as schemathesis's own
    # runner expects; the flow then goes on from the next seed until it has run its scenarios.
    target = tally.scenarios + scenarios
    for run in range(MAX_RUNS):
        seed(SEED + run)(Flow)
        try:
            Flow.run(
                settings=settings(
                    max_examples=target - tally.scenarios,
                    stateful_step_count=STEPS,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
            )
        except Flaky:
            tally.restarts += 1
        if tally.scenarios >= target:
            return
    raise AssertionError(f"{operation_ids[0]}: {tally.scenarios} scenarios after {MAX_RUNS} runs")


def test_stateful_links_works_and_jobs(stack: StackProcess, tokens: dict[str, str]) -> None:
    """Sequences that follow the links: ids from a create/execute answer feed the next calls. Every answer
    is checked as in the per-route fuzz, plus the stateful checks (a linked resource exists; a deleted one
    is gone). The Jobs run generated SQL and Python code in the user's sandboxed kernel."""
    token = tokens["stateful"]
    tally = Tally()
    started = time.monotonic()
    for flow, scenarios in ((WORKS_FLOW, WORKS_SCENARIOS), (JOBS_FLOW, SCENARIOS)):
        _run_flow(stack, token, flow, scenarios, tally)
    elapsed = time.monotonic() - started
    total = sum(tally.statuses.values())
    summary = (
        f"seed {SEED}, {WORKS_SCENARIOS} works and {SCENARIOS} Jobs scenarios of at most {STEPS} steps "
        f"({tally.scenarios} run, "
        f"{tally.restarts} restarts at the next seed after Flaky): {total} requests over "
        f"{len(tally.per_operation)} of {len(STATEFUL)} operations in {elapsed:.0f} s; statuses "
        + ", ".join(f"{code}: {n}" for code, n in sorted(tally.statuses.items()))
        + "; answered below 400 for a linked id: "
        + (", ".join(f"{key} {n}" for key, n in sorted(tally.linked.items())) or "none")
        + f"; {len(tally.failures)} failures"
    )
    print(summary)
    if os.environ.get("SPARKGATE_FUZZ_RECORD") == "1":
        _record_stateful(summary, tally)
    assert not tally.failures, "\n".join(tally.failures[:20])
    assert not [code for code in tally.statuses if code >= 500]
    # the flows really ran: every linked operation was answered for a work or a Job an earlier answer made
    linked = {f"{op.method.upper()} {op.path}" for op in _operations(STATEFUL) if "{" in op.path}
    assert linked <= set(tally.linked), summary


def _operations(operation_ids: tuple[str, ...]) -> list[Any]:
    schema = schemathesis.openapi.from_dict(openapi.app_document()).include(operation_id=list(operation_ids))
    return [result.ok() for result in schema.get_all_operations()]


def _record_stateful(summary: str, tally: Tally) -> None:
    path = Path(ROOT / "bench" / "results" / "fuzz.md")
    text = path.read_text() if path.exists() else ""
    head = text.split("\n## Stateful", 1)[0].rstrip("\n")
    lines = ["", "## Stateful links (test_stateful_links_works_and_jobs)", "", summary, ""]
    lines += ["| operation | requests | of them below 400 for a linked id |", "|---|---|---|"]
    lines += [f"| `{key}` | {n} | {tally.linked[key]} |" for key, n in sorted(tally.per_operation.items())]
    if tally.failures:
        lines += ["", "Failures:", ""] + [f"- {f}" for f in tally.failures[:50]]
    path.write_text(head + "\n" + "\n".join(lines) + "\n")


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
