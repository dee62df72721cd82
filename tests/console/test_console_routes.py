"""The console's routes in-process: the page, its modules, config.js, and hostile asset names."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from chalice.test import Client

from chalicelib.api import console
from tests.conftest import ROOT


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[Client]:
    monkeypatch.setenv("SPARKGATE_STAGE", "local")
    monkeypatch.setenv("SPARKGATE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv(console.WS_URL_ENV, "ws://127.0.0.1:8001")
    from app import app

    with Client(app, project_dir=str(ROOT), stage_name="local") as test_client:
        yield test_client


def test_the_page_names_only_its_own_modules_and_a_strict_policy(client: Client) -> None:
    for path in ("/console", "/console/"):
        page = client.http.get(path)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        html = page.body.decode()
        assert "{base}" not in html and 'src="/console/app.js"' in html
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "connect-src 'self' ws://127.0.0.1:8001" in policy
        assert page.headers["X-Frame-Options"] == "DENY"
        # every module and style sheet the page names is served, nothing from elsewhere
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            if ref.startswith(("data:", "#")):
                continue
            assert ref.startswith("/console/"), ref
            assert client.http.get(ref).status_code == 200, ref


def test_every_module_import_is_served(client: Client) -> None:
    for name in console.ASSETS:
        if not name.endswith(".js"):
            continue
        text = client.http.get(f"/console/{name}").body.decode()
        for imported in re.findall(r'from "\./([\w.-]+)"', text):
            answer = client.http.get(f"/console/{imported}")
            assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/javascript"), imported


def test_config_names_the_websocket_and_no_secret(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = client.http.get("/console/config.js")
    assert answer.body.decode() == 'export const config = {"api": "", "ws": "ws://127.0.0.1:8001"};\n'
    monkeypatch.setenv(console.WS_URL_ENV, "javascript:alert(1)")  # not a WebSocket URL: none
    assert '"ws": ""' in client.http.get("/console/config.js").body.decode()


def test_the_vendored_editor_is_pinned_and_licensed(client: Client) -> None:
    vendor = ROOT / "chalicelib" / "console" / "vendor"
    assert "codemirror 5.65.21" in (vendor / "VERSION").read_text() and "MIT" in (vendor / "LICENSE").read_text()
    script = client.http.get("/console/vendor/codemirror.js")
    assert script.status_code == 200 and b'CodeMirror.version = "5.65.21"' in script.body


@pytest.mark.parametrize(
    "path",
    [
        "/console/..%2Fapi%2Fconsole.py",
        "/console/../app.py",
        "/console/index.html",  # served as the page only, with its base filled in
        "/console/nothing.js",
        "/console/vendor/LICENSE",
        "/console/vendor/..%2F..%2Fapi%2Fconsole.py",
        "/console/vendor/%2Fetc%2Fpasswd",
        "/console/vendor/codemirror.js%00.css",
        "/console/" + "a" * 5000 + ".js",
    ],
)
def test_hostile_asset_names_are_404(client: Client, path: str) -> None:
    answer = client.http.get(path)
    assert answer.status_code in (403, 404), (path, answer.status_code)
    assert b"root:" not in answer.body and b"def console_asset" not in answer.body


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_colours_have_readable_contrast() -> None:
    """WCAG AA (4.5:1) for every text colour of console.css on the background it is shown on."""
    css = (ROOT / "chalicelib" / "console" / "console.css").read_text()
    var = dict(re.findall(r"--([\w-]+): (#[0-9a-f]{6})", css))
    pairs = [
        (var["fg"], "#ffffff"),
        (var["fg"], var["bg2"]),
        (var["muted"], "#ffffff"),
        (var["muted"], var["bg2"]),
        (var["bad"], var["bg2"]),
        (var["warn"], var["bg2"]),
        ("#ffffff", var["accent"]),
    ]
    badges = re.findall(r"background: (#[0-9a-f]{6}); \}", css.split(".conn", 1)[1].split("main {", 1)[0])
    pairs += [("#ffffff", colour) for colour in badges]
    assert len(badges) == 3
    for text, background in pairs:
        assert _contrast(text, background) >= 4.5, (text, background)
