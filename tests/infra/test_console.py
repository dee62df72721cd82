"""The CDK app deploys the console with the API: the page's files are in the Lambda package, the
functions know the stage's WebSocket URL (config.js hands it to the page) and the stack outputs the URL."""

from __future__ import annotations

import zipfile
from typing import Any

from synth_support import REGION, Synth

from chalicelib.api import console


def _logical_id(template: dict[str, Any], resource_type: str) -> str:
    found = [k for k, v in template["Resources"].items() if v["Type"] == resource_type]
    assert len(found) == 1, found
    return found[0]


def test_the_console_url_is_an_output(dev: Synth) -> None:
    template = dev.template_json
    rest_api = _logical_id(template, "AWS::Serverless::Api")
    assert template["Outputs"]["ConsoleUrl"]["Value"] == {
        "Fn::Join": [
            "",
            ["https://", {"Ref": rest_api}, f".execute-api.{REGION}.", {"Ref": "AWS::URLSuffix"}, "/dev/console/"],
        ]
    }


def test_the_api_handler_knows_the_websocket_url(dev: Synth) -> None:
    template = dev.template_json
    ws_api = _logical_id(template, "AWS::ApiGatewayV2::Api")
    handler = template["Resources"]["APIHandler"]["Properties"]
    assert handler["Environment"]["Variables"][console.WS_URL_ENV] == {
        "Fn::Join": ["", ["wss://", {"Ref": ws_api}, f".execute-api.{REGION}.", {"Ref": "AWS::URLSuffix"}, "/dev"]]
    }


def test_the_lambda_package_holds_the_console(dev: Synth) -> None:
    packages = [p for p in dev.assembly_dir.rglob("*.zip") if p.name != "sparkgate-engine.zip"]
    names: set[str] = set()
    for package in packages:
        with zipfile.ZipFile(package) as archive:
            names |= set(archive.namelist())
    wanted = {"chalicelib/console/index.html", "chalicelib/api/console.py"}
    wanted |= {f"chalicelib/console/{name}" for name in console.ASSETS}
    wanted |= {f"chalicelib/console/vendor/{name}" for name in console.VENDOR}
    assert wanted <= names, sorted(wanted - names)
