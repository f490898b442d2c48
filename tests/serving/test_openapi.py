"""The OpenAPI schema tells the truth: schemathesis, run against the real server, finds nothing.

The schema describes the FastAPI routes while the lean routes mounted ahead of them answer
predict and infer, so these runs also check that the two agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from serving_fixtures import TOKEN, LiveServer, run_schemathesis

from serving import api_v1, api_v2
from serving.app import create_app
from serving.security import SECURITY_SCHEME, require_token
from serving.settings import ServingSettings

INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every ``(path, method, operation)`` of an OpenAPI schema."""
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


@pytest.fixture(scope="module")
def guarded(synthetic_store) -> Iterator[LiveServer]:
    """A server on the synthetic store that demands the bearer token."""
    with LiveServer(store=synthetic_store.root, poll_interval_s=0, token=TOKEN) as live:
        yield live


def test_schemathesis_finds_no_failure(server, tmp_path):
    run_schemathesis(server, tmp_path, examples=50)  # over a thousand cases


def test_schemathesis_finds_the_token_enforced(guarded, tmp_path):
    # With the token given, ignored_auth also sends each request without it and with a
    # wrong one, and expects 401.
    run_schemathesis(
        guarded,
        tmp_path,
        f"--header=Authorization: Bearer {TOKEN}",
        "--include-path-regex=/(predict|infer|reload)$",
        examples=20,
    )


def test_every_error_is_documented_with_the_error_body(client):
    schema = client.get("/openapi.json").json()
    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorInfo"}, (method, path, status)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_the_token_is_documented_exactly_where_it_applies(synthetic_store):
    settings = {"store": synthetic_store.root, "poll_interval_s": 0}
    checked = {
        (route.path, method.lower())
        for route in [*api_v1.router.routes, *api_v2.router.routes]
        if any(dependency.dependency is require_token for dependency in route.dependencies)
        for method in route.methods
    }
    schema = create_app(ServingSettings(token=TOKEN, **settings)).openapi()
    secured = {(p, m) for p, m, o in operations(schema) if o.get("security")}
    refused = {(p, m) for p, m, o in operations(schema) if "401" in o["responses"]}
    assert secured == refused == checked and len(checked) == 4
    assert schema["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"] == "bearer"

    open_schema = create_app(ServingSettings(**settings)).openapi()
    assert not [p for p, _, o in operations(open_schema) if "401" in o["responses"]]
    assert not [p for p, _, o in operations(open_schema) if "security" in o]
    assert "securitySchemes" not in open_schema["components"]


def test_the_row_limit_is_this_servers(server, client):
    schema = client.get("/openapi.json").json()
    rows = schema["components"]["schemas"]["PredictRequest"]["properties"]["rows"]
    assert rows["maxItems"] == server.settings.max_batch_rows == 64
    for path in INFER_PATHS:
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        forms = body["schema"]["properties"]["inputs"]["items"]["anyOf"]
        assert [form["title"] for form in forms] == ["Matrix input", "Column input"]
        for form in forms:
            assert form["properties"]["shape"]["prefixItems"][0]["maximum"] == 64


def test_lean_routes_answer_documented_operations(server, client):
    paths = client.get("/openapi.json").json()["paths"]
    lean = [*api_v1.lean_routes(), *api_v2.lean_routes()]
    on_lane = server.app.lane_routes
    assert [route.path for route in on_lane] == [route.path for route in lean]
    for route in lean:
        assert set(paths[route.path]) == {method.lower() for method in route.methods}


def test_integers_may_be_written_with_a_zero_fraction(client):
    # JSON has one number type and JSON Schema's "integer" includes 1.0: so does the server.
    v1 = client.post("/v1/ensembles/toy/predict", json={"rows": [[0.0] * 4], "version": 1.0})
    assert v1.status_code == 200, v1.text
    entry = {"name": "input", "shape": [1.0, 4.0], "datatype": "FP32", "data": [0.0] * 4}
    v2 = client.post("/v2/models/toy/infer", json={"inputs": [entry]})
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["shape"] == [1, 3]
    refused = client.post("/v1/ensembles/toy/predict", json={"rows": [[0.0] * 4], "version": "1"})
    assert refused.status_code == 422 and refused.json()["field"] == "version"


@pytest.mark.parametrize("version", ["01", "²", "1 ", "1" * 40])
def test_path_versions_follow_the_documented_pattern(client, version):
    response = client.get(f"/v2/models/toy/versions/{version}")
    assert response.status_code == 400
    message = (
        "model version must be a positive integer of at most 18 digits, without leading "
        f"zeros; got '{version}'"
    )
    assert response.json() == {"error": message}


class _StampMiddleware:
    """A deployment's own pure-ASGI middleware: stamps a header on every answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def stamped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-stamp", b"1")]
            await send(message)

        await self.app(scope, receive, stamped)


def test_middleware_added_to_the_app_wraps_the_lane_too(synthetic_store):
    live = LiveServer(store=synthetic_store.root, poll_interval_s=0)
    live.app.add_middleware(_StampMiddleware)
    with live, live.client() as http:
        lane = http.post("/v1/ensembles/toy/predict", json={"rows": [[0.0] * 4]})
        other = http.get("/v2/health/live")
    assert lane.status_code == 200 and lane.headers["x-stamp"] == "1"
    assert other.headers["x-stamp"] == "1"
