"""Access control: the optional bearer token and the request body size limit."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import BodyTooLargeError, UnauthorizedError, response_for, status_for_class

#: Name of the bearer token's security scheme in the OpenAPI schema.
SECURITY_SCHEME = "bearerToken"


async def require_token(request: Request) -> None:
    """FastAPI dependency: demand ``Authorization: Bearer <token>`` when a token is set.

    Async so FastAPI runs it on the event loop instead of a worker thread.

    Raises
    ------
    UnauthorizedError
        When a token is configured and the header is missing or different.
    """
    token = request.app.state.settings.token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise UnauthorizedError(
            "missing or wrong bearer token: send the header 'Authorization: Bearer <token>'"
        )


def document_token(schema: dict[str, Any], guarded: bool) -> None:
    """Make an OpenAPI schema say whether this server demands the token, in place.

    Routes that check the token document its refusal (``error_responses`` of
    :class:`UnauthorizedError`). With a token they also get the bearer security
    requirement; without one, nothing refuses them, so the refusal is removed.

    Parameters
    ----------
    schema : dict
        The OpenAPI schema of the app.
    guarded : bool
        Whether ``settings.token`` is set.
    """
    status = str(status_for_class(UnauthorizedError))
    for operations in schema["paths"].values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if status not in responses:
                continue
            if guarded:
                operation["security"] = [{SECURITY_SCHEME: []}]
            else:
                del responses[status]
    if guarded:
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[SECURITY_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "The server's token (`ENSEMBLES_TOKEN`), on predict, infer and "
            "reload routes.",
        }


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 before any route reads them.

    The declared ``Content-Length`` is checked first; chunked bodies are counted as they
    arrive and buffered (up to the limit) so the route sees the whole body at once.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
                break
        too_large = BodyTooLargeError(
            f"request body is larger than the limit of {self.max_bytes} bytes; "
            "send fewer rows per request"
        )
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await response_for(too_large)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await response_for(too_large)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
