"""Shared routing pieces of ``/v1`` and ``/v2``: the registry dependency, lean routes, JSON."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from serving.registry import EnsembleRegistry

#: Scope key where a route records what served the request (for the access log).
SERVED_KEY = "ensembles.served"


def json_response(value: Any) -> Response:
    """A JSON response encoded by orjson (numpy arrays included)."""
    return Response(
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


async def registry_of(request: Request) -> EnsembleRegistry:
    """FastAPI dependency: the app's registry (async: no thread hop)."""
    return request.app.state.registry


Registry = Annotated[EnsembleRegistry, Depends(registry_of)]


def mark_served(request: Request, ensemble: str, version: int, request_id: str | None) -> None:
    """Record the ensemble, version and request id that answered (read by the access log)."""
    request.scope[SERVED_KEY] = (ensemble, version, request_id)


class LeanRoute(Route):
    """A plain Starlette route that, like FastAPI's, records itself as ``scope["route"]``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child
