"""Shared routing pieces of ``/v1`` and ``/v2``: the registry dependency, lean routes, JSON."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from ensembles.errors import NotFoundError, StoreError
from ensembles.evaluation import COMBINER_NAMES
from ensembles.store import MAX_VERSION_DIGITS, NAME_PATTERN, VERSION_PATTERN
from serving.errors import (
    BodyTooLargeError,
    NotReadyError,
    UnsupportedEncodingError,
    VersionRefusedError,
)
from serving.registry import EnsembleRegistry

#: Scope key where a route records what served the request (for the access log).
SERVED_KEY = "ensembles.served"
#: What a route that looks an ensemble (and maybe a version) up in the registry can raise.
LOOKUP_ERRORS = (StoreError, NotFoundError, VersionRefusedError, NotReadyError)
#: What a route that reads a request body can raise: its size limit and its encoding.
BODY_ERRORS = (BodyTooLargeError, UnsupportedEncodingError)
#: JSON schema of a combiner choice: every name training publishes (the ensemble's info
#: and metadata list those fitted to each version; another one is refused with 400).
COMBINER_SCHEMA: dict[str, Any] = {"type": "string", "enum": list(COMBINER_NAMES)}


def json_response(value: Any) -> Response:
    """A JSON response encoded by orjson (numpy arrays included)."""
    return Response(
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


async def registry_of(request: Request) -> EnsembleRegistry:
    """FastAPI dependency: the app's registry (async: no thread hop)."""
    return request.app.state.registry


Registry = Annotated[EnsembleRegistry, Depends(registry_of)]

# Path parameters: the patterns are documented, not enforced by FastAPI, so a bad name or
# version gets the routes' own 400 (as on the lean routes) rather than a framework 422.
#: An ensemble (V2: model) name in a path.
EnsembleName = Annotated[
    str,
    Path(
        description="Ensemble name: 1-64 lowercase letters, digits, '-' or '_', starting "
        "with a letter or digit.",
        json_schema_extra={"pattern": NAME_PATTERN.pattern},
    ),
]
#: A version number in a V2 path (versions are strings on the wire).
VersionText = Annotated[
    str,
    Path(
        description=f"Version number: a positive integer of at most {MAX_VERSION_DIGITS} "
        "digits, without leading zeros.",
        json_schema_extra={"pattern": VERSION_PATTERN.pattern},
    ),
]


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
