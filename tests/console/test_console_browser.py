"""The console in a real headless Chromium (Debian's, scripts/ensure-chromium.sh) driven by Playwright,
against the real local stack (one per module) and one signed-in page shared by the tests.

``SPARKGATE_CONSOLE_SCREENSHOTS=<folder>`` also saves the screenshots docs/console.md shows.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.conftest import ROOT
from tests.e2e.stack import ADMIN, StackProcess

CHROMIUM = "/usr/bin/chromium"
CSV_PATH = ROOT / "data" / "nyc_taxi" / "0_10000_nyc_taxi_and_building.csv"
FINAL = ("Succeed", "Failed", "Cancelled", "Timeout")
JOB_MS = 240_000
SHOTS = os.environ.get("SPARKGATE_CONSOLE_SCREENSHOTS")

pytestmark = pytest.mark.timeout(900)


def shot(page: Page, name: str) -> None:
    """Save a screenshot for docs/console.md when asked to (PNG, the viewport only)."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        image = Image.open(io.BytesIO(page.screenshot())).convert("RGB").quantize(colors=64)
        image.save(Path(SHOTS) / f"console-{name}.png", optimize=True)  # small enough to commit


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    process = StackProcess(
        tmp_path_factory.mktemp("console") / "state",
        {"SPARKGATE_DATA_ROOTS": str(ROOT / "data"), "SPARKGATE_WORK_ROOTS": str(ROOT / "data")},
    )
    process.start(timeout=120)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def page(browser: Browser, stack: StackProcess) -> Iterator[Page]:
    """A page signed in through the form, as a person would."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda err: errors.append(str(err)))
    tab.goto(f"{stack.url}/console/")
    shot(tab, "signin")
    tab.get_by_label("Username").fill(ADMIN[0])
    tab.get_by_label("Password").fill(ADMIN[1])
    tab.get_by_label("Password").press("Enter")
    tab.wait_for_selector("#conn[data-state=live]", timeout=20_000)
    yield tab
    context.close()
    assert not errors, errors


def set_code(page: Page, code: str) -> None:
    page.evaluate("code => document.querySelector('.CodeMirror').CodeMirror.setValue(code)", code)


def run_code(page: Page, code: str, run_type: str = "sql", *, wait: bool = True) -> None:
    """A new tab of ``run_type`` with ``code``, run with Ctrl-Enter from the editor."""
    page.get_by_role("button", name="+ Python" if run_type == "python" else "+ SQL").click()
    set_code(page, code)
    page.locator(".CodeMirror textarea").focus()
    page.keyboard.press("Control+Enter")
    if wait:
        wait_final(page)


def wait_final(page: Page) -> str:
    page.wait_for_function(
        "final => final.includes(document.querySelector('#run-status').textContent)", arg=list(FINAL), timeout=JOB_MS
    )
    page.wait_for_selector("#results [role=tab]", timeout=60_000)  # the results are loaded
    return page.inner_text("#run-status")


def log_lines(page: Page) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = page.eval_on_selector_all(
        "#log li", "items => items.map(li => ({n: +li.dataset.line, via: li.dataset.via, text: li.textContent}))"
    )
    return lines


def ticks(lines: list[dict[str, Any]]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.search(r" INFO tick (\d+)$", line["text"]))]


def test_sign_in_keeps_the_token_out_of_urls(page: Page, browser: Browser, stack: StackProcess) -> None:
    assert page.inner_text("#user-name") == ADMIN[0]
    assert page.inner_text("#conn") == "live"
    token = page.evaluate("JSON.parse(sessionStorage.getItem('sparkgate.session')).token")
    assert token and token not in page.url
    # a wrong password is refused with the API's message, in the page
    other = browser.new_page()
    other.goto(f"{stack.url}/console/")
    other.get_by_label("Username").fill(ADMIN[0])
    other.get_by_label("Password").fill("not-the-password")
    other.get_by_role("button", name="Sign in").click()
    other.wait_for_selector("#signin-error:has-text('invalid username or password')")
    assert other.is_hidden("#nav")
    other.close()


def test_the_local_stack_grants_cors_to_the_consoles_own_origin_only(stack: StackProcess) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    status, _, headers = stack.call("OPTIONS", "/pointmap", headers={"Origin": stack.url, **preflight})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == stack.url
    status, _, headers = stack.call("OPTIONS", "/pointmap", headers={"Origin": "https://evil.example", **preflight})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_a_sql_job_over_the_taxi_csv_shows_the_rows_and_count(page: Page) -> None:
    with CSV_PATH.open(newline="") as handle:
        expected = Counter(row["VendorID"] for row in csv.DictReader(handle))
    run_code(
        page,
        f"create temporary view taxi using csv options (path '{CSV_PATH}', header 'true');\n"
        "select VendorID, count(*) as trips from taxi group by VendorID order by VendorID",
    )
    assert page.inner_text("#run-status") == "Succeed"
    page.wait_for_selector("#result-grid")
    assert page.inner_text("#result-count") == f"{len(expected)} rows"
    headers = page.eval_on_selector_all("#result-grid th", "ths => ths.map(th => th.innerText.split('\\n'))")
    assert headers == [["VendorID", "string"], ["trips", "long"]]
    rows = page.eval_on_selector_all(
        "#result-grid tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
    )
    assert {vendor: int(n) for vendor, n in rows} == dict(expected)
    assert float(page.get_attribute("#run-progress", "value") or 0) == 1.0
    shot(page, "editor")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0] == "VendorID,trips" and len(text.splitlines()) == len(expected) + 1


def test_a_python_jobs_printed_lines_appear_live_in_order_once(page: Page) -> None:
    code = "import time\nfor i in range(12):\n    print('tick', i, flush=True)\n    time.sleep(0.4)"
    run_code(page, code, "python", wait=False)
    # live: lines are on the page while the Job still runs
    page.wait_for_function(
        "() => document.querySelector('#log').textContent.includes('tick 2')"
        " && document.querySelector('#run-status').textContent === 'Running'",
        timeout=JOB_MS,
    )
    assert wait_final(page) == "Succeed"
    lines = log_lines(page)
    assert ticks(lines) == list(range(12))
    assert [line["n"] for line in lines] == list(range(1, len(lines) + 1))  # every line once, in order
    assert page.inner_text("#result-text") == "\n".join(f"tick {i}" for i in range(12))  # printed output


def test_kill_ends_a_long_job_cancelled(page: Page) -> None:
    run_code(page, "import time\nprint('sleeping')\ntime.sleep(600)", "python", wait=False)
    page.wait_for_function("() => document.querySelector('#log').textContent.includes('sleeping')", timeout=JOB_MS)
    page.get_by_role("button", name="Kill").click()
    assert wait_final(page) == "Cancelled"
    assert page.is_disabled("#kill")


def _drop_sockets(stack: StackProcess, token: str) -> int:
    """Close the user's WebSocket connections from the server side (the @connections API)."""
    from chalicelib.store import connections, wsapi

    user_id = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sub"]
    endpoint = re.search(r"@connections API on (\S+)", "".join(stack.output))
    assert endpoint, stack.output
    with stack.aws():
        wsapi.reset()
        live = connections.user_connections(user_id)
        for connection in live:
            wsapi.disconnect(connection.connection_id, endpoint.group(1))
        wsapi.reset()
    return len(live)


def test_a_dropped_socket_falls_back_to_http_with_no_lost_or_repeated_line(page: Page, stack: StackProcess) -> None:
    code = "import time\nfor i in range(40):\n    print('tick', i, flush=True)\n    time.sleep(0.25)"
    run_code(page, code, "python", wait=False)
    page.wait_for_function("() => document.querySelector('#log').textContent.includes('tick 3')", timeout=JOB_MS)
    token = page.evaluate("JSON.parse(sessionStorage.getItem('sparkgate.session')).token")
    assert _drop_sockets(stack, token) >= 1
    page.wait_for_selector("#conn[data-state=lost]", timeout=10_000)
    assert page.inner_text("#conn") == "socket lost: following over HTTP"
    assert wait_final(page) == "Succeed"
    page.wait_for_selector("#conn[data-state=live]", timeout=30_000)  # and back on the socket
    lines = log_lines(page)
    assert ticks(lines) == list(range(40))
    assert [line["n"] for line in lines] == list(range(1, len(lines) + 1))
    vias = Counter(line["via"] for line in lines)
    assert vias["ws"] > 0 and vias["http"] > 0, vias


def test_a_bad_query_shows_its_error(page: Page) -> None:
    run_code(page, "select no_such_column from no_such_table")
    assert page.inner_text("#run-status") == "Failed"
    error = page.inner_text("#result-error")
    assert "no_such_table" in error and "TABLE_OR_VIEW_NOT_FOUND" in error
    assert page.get_by_role("tab", name="Error").get_attribute("aria-selected") == "true"
    # the log's level filter shows the ERROR lines only
    page.get_by_label("Level").select_option("ERROR")
    visible = page.eval_on_selector_all(
        "#log li", "items => items.filter(li => li.offsetParent).map(li => li.dataset.level)"
    )
    assert visible and set(visible) == {"ERROR"}
    page.get_by_label("Level").select_option("all")


def test_history_lists_the_jobs_newest_first_and_reopens_one(page: Page) -> None:
    page.get_by_role("button", name="History").click()
    page.wait_for_selector("#history-table tbody tr")
    statuses = page.eval_on_selector_all(
        "#history-table tbody tr td:nth-child(2)", "tds => tds.map(td => td.textContent)"
    )
    assert statuses[:2] == ["Failed", "Succeed"]  # the bad query, then the dropped-socket run
    assert "Cancelled" in statuses
    shot(page, "history")
    page.get_by_label("Status").select_option("Cancelled")
    page.wait_for_function("() => [...document.querySelectorAll('#history-table tbody tr')].length === 1")
    page.locator("#history-table tbody button").first.click()
    page.wait_for_selector("#view-editor:not([hidden])")
    assert page.inner_text("#run-status") == "Cancelled" and "sleeping" in page.inner_text("#log")


def test_a_work_is_created_and_its_task_seen_succeed(page: Page) -> None:
    page.get_by_role("button", name="Works").click()
    page.get_by_role("button", name="New work").click()
    page.get_by_label("Name", exact=True).fill("taxi rollup")
    page.get_by_label("Description", exact=True).fill("trips and average fare per vendor")
    page.get_by_label("Category", exact=True).select_option("SPARK_SQL")
    page.get_by_label("Work directory (file)", exact=True).fill("works/taxi_rollup.sql")
    page.get_by_label("Extra params (one per line)", exact=True).fill(f"-Dcsv={CSV_PATH}\n-Dmin_fare=10")
    page.get_by_label("Run frequency", exact=True).select_option("daily")
    page.get_by_label("Paused", exact=True).check()
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#work-message:text-is('created')")
    page.wait_for_selector("#works-table tbody button:text-is('taxi rollup')")
    assert "daily (paused)" in page.inner_text("#works-table tbody")
    page.get_by_role("button", name="Start task").click()
    page.wait_for_selector("#follow-status[data-status='0']", timeout=JOB_MS)
    page.wait_for_function(
        "() => document.querySelector('#follow-log').textContent.includes('Congratulations')", timeout=30_000
    )
    page.wait_for_selector("#tasks-table td[data-status='0']:text-is('succeeded')")  # the list follows
    shot(page, "works")


def _pixels(png_base64: str) -> tuple[tuple[int, int], bytes]:
    image = Image.open(io.BytesIO(base64.b64decode(png_base64))).convert("RGBA")
    return image.size, image.tobytes()


def test_a_pointmap_in_the_page_is_pixel_identical_to_the_apis_png(page: Page, stack: StackProcess) -> None:
    page.get_by_role("button", name="Maps").click()
    page.get_by_role("button", name="Open scope").click()
    page.wait_for_selector("#m-message:text-is('scope console open')", timeout=JOB_MS)
    page.get_by_role("button", name="Load").click()
    page.wait_for_selector("#m-message:text-is('loaded nyc_taxi')", timeout=JOB_MS)
    page.wait_for_selector("#m-tables button:text-is('nyc_taxi')", timeout=60_000)
    page.locator("#m-tables button", has_text="nyc_taxi").click()
    page.wait_for_selector("#m-schema-view:has-text('pickup_longitude')")
    assert "(9999 rows)" in page.inner_text("#m-schema-view")
    page.get_by_role("button", name="Render").click()
    page.wait_for_selector("#m-status:has-text('rendered pointmap')", timeout=JOB_MS)
    shot(page, "maps")
    request = page.evaluate("window.sparkgateConsole.mapRequest()")
    shown = page.get_attribute("#m-img", "src") or ""
    assert shown.startswith("data:image/png;base64,")
    status, body, _ = stack.call("POST", f"/{request['kind']}", request["body"], stack.login())
    assert status == 200, body
    size, pixels = _pixels(shown.split(",", 1)[1])
    assert size == (512, 448) and (size, pixels) == _pixels(body["result"])
    assert Image.frombytes("RGBA", size, pixels).getchannel("A").getbbox() is not None  # not blank
    # dragging the view asks for a render of the moved box
    before = page.get_attribute("#m-img", "data-box")
    view = page.locator("#m-view").bounding_box()
    assert view is not None
    page.mouse.move(view["x"] + 200, view["y"] + 200)
    page.mouse.down()
    page.mouse.move(view["x"] + 300, view["y"] + 250, steps=5)
    page.mouse.up()
    page.wait_for_function("old => document.querySelector('#m-img').dataset.box !== old", arg=before, timeout=JOB_MS)
    x0, _, x1, _ = (float(v) for v in (page.get_attribute("#m-img", "data-box") or "").split(","))
    old = [float(v) for v in (before or "").split(",")]
    assert x0 < old[0] and x1 < old[2]  # dragged right: the box moved west


def test_narrow_window_stacks_the_panels(page: Page) -> None:
    page.set_viewport_size({"width": 600, "height": 800})
    try:
        page.get_by_role("button", name="Editor").click()
        log, results = page.locator("#log").bounding_box(), page.locator("#results").bounding_box()
        assert log and results and results["y"] > log["y"] + log["height"] - 1  # one column
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 600, width  # nothing wider than the window
        shot(page, "narrow")
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})
