"""The OpenAPI document: generated from the route table and the models, committed, served, rendered."""

from __future__ import annotations

import json
from typing import Any

from chalice.test import Client
from openapi_spec_validator import validate

from chalicelib import openapi


def _document() -> dict[str, Any]:
    return openapi.app_document()


def test_committed_document_is_current() -> None:
    """docs/openapi.json is what `make openapi` writes today (run it after changing routes or models)."""
    committed = openapi.DOC_PATH.read_text()
    assert committed == openapi.render(_document()), "docs/openapi.json is stale: run `make openapi`"


def test_committed_asyncapi_is_current_and_describes_every_frame() -> None:
    """docs/asyncapi.json: the WebSocket frames as JSON Schemas, also written by `make openapi`."""
    document = openapi.asyncapi()
    assert openapi.ASYNCAPI_PATH.read_text() == openapi.render(document), "run `make openapi`"
    schemas = document["components"]["schemas"]
    for frame in ("RequestFrame", "AnswerFrame", "ErrorFrame", "StatusData", "ProgressData", "LogData"):
        assert schemas[frame]["type"] == "object", frame
    assert "Running" in schemas["StatusData"]["properties"]["status"]["enum"]


def test_document_is_valid_openapi_31_and_covers_every_route() -> None:
    from app import app

    document = _document()
    validate(document)
    assert document["openapi"] == "3.1.0"
    for path, methods in app.routes.items():
        if path in openapi.DOC_ROUTES:
            continue
        for method in methods:
            op = document["paths"][path][method.lower()]
            assert op["responses"]["default" if method != "OPTIONS" else "403"], (method, path)
    # every link names a real operation
    ids = {op["operationId"] for methods in document["paths"].values() for op in methods.values()}
    for links in openapi.LINKS.values():
        for op_id, _, _ in links.values():
            assert op_id in ids, op_id
    # every hand-described operation is a real route (no drift)
    for key in openapi.OPERATIONS:
        method, path = key.split(" ", 1)
        assert method in app.routes.get(path, {}), key


def test_surfaces_envelopes_and_auth() -> None:
    document = _document()
    paths = document["paths"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["tokenHeader"]["name"] == "Authorization"
    assert schemes["linkisCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "linkis_user_session_ticket_id_v1",
        "description": schemes["linkisCookie"]["description"],
    }
    works = paths["/api/v1/works"]["post"]
    assert works["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/WorkCreate"}
    assert works["responses"]["400"] == {"$ref": "#/components/responses/WorksError400"}
    assert "201" in works["responses"]
    execute = paths["/api/rest_j/v1/entrance/execute"]["post"]
    assert {"linkisCookie": []} in execute["security"]
    assert execute["responses"]["default"] == {"$ref": "#/components/responses/LinkisErrorDefault"}
    assert paths["/token"]["post"]["security"] == []
    assert paths["/pointmap"]["post"]["responses"]["400"] == {"$ref": "#/components/responses/GeoError400"}
    create = document["components"]["schemas"]["WorkCreate"]
    assert create["required"] == ["name", "description", "type", "category"]
    assert create["properties"]["name"]["anyOf"][0]["maxLength"] == 128
    assert create["examples"]
    limit = next(p for p in paths["/api/v1/works"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 100


def test_served_and_rendered(client: Client) -> None:
    """/openapi.json answers the document, /docs the vendored Swagger UI (no CDN)."""
    answer = client.http.get("/openapi.json")
    assert answer.status_code == 200
    assert json.loads(answer.body) == json.loads(openapi.render(_document()))
    page = client.http.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    html = page.body.decode()
    assert "/docs/swagger-ui-bundle.js" in html and "http" not in html.split("<body>")[1]
    script = client.http.get("/docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.body
    assert client.http.get("/docs/swagger-ui.css").status_code == 200
    missing = client.http.get("/docs/nothing.js")
    assert missing.status_code == 404
