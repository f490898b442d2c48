"""Serving errors and the one table that maps every error to an HTTP status and JSON body."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ensembles.errors import (
    ConfigError,
    DataError,
    EnsembleError,
    IntegrityError,
    NotFittedError,
    NotFoundError,
    ShapeError,
    StoreError,
)

logger = logging.getLogger(__name__)

#: Status recorded for requests whose client went away (nginx's "client closed request");
#: nothing is sent, since no one is listening.
CLIENT_CLOSED = 499


class ServingError(EnsembleError):
    """Base of the errors raised by the serving layer."""


class InvalidRequestError(ServingError):
    """A request is malformed or does not match the model (feature count, dtype, values ...).

    Parameters
    ----------
    message : str
        What was wrong and what was expected.
    field : str, optional
        The request field at fault, reported on ``/v1``.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BodyTooLargeError(ServingError):
    """The request body (or its decompressed form) exceeds ``max_body_bytes``."""


class UnauthorizedError(ServingError):
    """A protected route was called without the right bearer token."""


class OverloadedError(ServingError):
    """Too many rows are queued for an ensemble; the client should retry later."""


class UnknownVersionError(NotFoundError):
    """The ensemble exists but has no such version (on ``/v1`` the field is ``version``)."""

    field = "version"


class VersionRefusedError(ServingError):
    """The version asked for was refused at load time (corrupt or incomplete)."""


class NotReadyError(ServingError):
    """The ensemble or version exists but is not loaded (yet)."""


class ModelUnavailableError(ServingError):
    """A readiness probe for a model or version that is not loaded (V2: 400)."""


class UnsupportedEncodingError(ServingError):
    """The request body's ``Content-Encoding`` is neither gzip, deflate nor identity."""


class UnsupportedContentTypeError(ServingError):
    """A ``/v1`` body declared as something other than JSON (``Content-Type``)."""


#: Exception class -> HTTP status. The first matching class in MRO order wins.
STATUS: dict[type[BaseException], int] = {
    InvalidRequestError: 400,
    ModelUnavailableError: 400,
    UnauthorizedError: 401,
    NotFoundError: 404,
    VersionRefusedError: 409,
    BodyTooLargeError: 413,
    UnsupportedEncodingError: 415,
    UnsupportedContentTypeError: 415,
    OverloadedError: 503,
    NotReadyError: 503,
    RequestValidationError: 422,
    ShapeError: 400,
    DataError: 400,
    ConfigError: 400,
    NotFittedError: 500,
    IntegrityError: 500,
    StoreError: 400,  # invalid ensemble names
    EnsembleError: 500,
}


def status_for_class(cls: type[BaseException]) -> int:
    """HTTP status of an exception class: the table entry of its nearest class, else 500."""
    for base in cls.__mro__:
        if base in STATUS:
            return STATUS[base]
    return 500


def status_for(exc: BaseException) -> int:
    """HTTP status of an exception: the table entry of its nearest class, else 500."""
    return status_for_class(type(exc))


class ErrorInfo(BaseModel):
    """The body of every error answer: what went wrong and, on ``/v1``, the field at fault."""

    error: str = Field(description="What was wrong, what was expected and what to do next.")
    field: str | None = Field(
        default=None,
        description="The request field at fault (``/v1`` only; absent when not known).",
    )


#: What each error tells a client, for the OpenAPI descriptions of the routes raising it.
MEANINGS: dict[type[BaseException], str] = {
    InvalidRequestError: "The request does not fit the ensemble: rows of another width than "
    "its features, values that are not finite or that drive an output non-finite, too many "
    "rows, a combiner or output it does not have, an invalid version, or a body that does "
    "not decompress (on `/v2`: that is not a valid inference request).",
    StoreError: "The ensemble name is invalid.",
    ModelUnavailableError: "The model (or that version) is not loaded: the readiness probe's no.",
    UnauthorizedError: "The server has a bearer token and the request does not carry it "
    "(`Authorization: Bearer <token>`).",
    NotFoundError: "No such ensemble, or no such version of it, in the model store.",
    VersionRefusedError: "The version was refused at load time (corrupt or incomplete); "
    "`/v1/ensembles/{name}` says why.",
    BodyTooLargeError: "The request body, or its decompressed form, is over the server's "
    "`max_body_bytes`.",
    UnsupportedEncodingError: "The `Content-Encoding` is neither gzip, deflate nor identity.",
    UnsupportedContentTypeError: "The body is declared as something other than JSON "
    "(`Content-Type`); a body with no `Content-Type` is read as JSON.",
    RequestValidationError: "The body does not match the request schema: a missing, "
    "unknown or mistyped field, or malformed JSON.",
    OverloadedError: "Too many rows are queued for the ensemble: retry after `Retry-After` "
    "seconds.",
    NotReadyError: "The ensemble, or the store, is not loaded yet: retry after `Retry-After` "
    "seconds.",
}


def error_responses(*errors: type[BaseException]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of the errors a route can raise, each with the error body.

    Parameters
    ----------
    *errors : exception classes
        What the route raises, each a key of :data:`MEANINGS`; documented under its
        status in :data:`STATUS`, errors of one status in one entry.

    Returns
    -------
    dict
        Status -> ``{"model": ErrorInfo, "description": ...}`` (FastAPI's ``responses``),
        in status order.
    """
    meanings: dict[int, list[str]] = {}
    for error in errors:
        meanings.setdefault(status_for_class(error), []).append(MEANINGS[error])
    return {
        status: {
            "model": ErrorInfo,
            "description": f"{HTTPStatus(status).phrase}. {' '.join(meanings[status])}",
        }
        for status in sorted(meanings)
    }


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def drop_framework_errors(schema: dict[str, Any]) -> None:
    """Remove FastAPI's own 422 (``{"detail": [...]}``) from an OpenAPI schema, in place.

    FastAPI documents it on every route with a parameter; our handler answers
    ``{"error", "field"}`` instead, and only routes that validate a body can fail
    validation: those declare 422 themselves through :func:`error_responses`.
    """
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            content = responses.get("422", {}).get("content", {})
            if content.get("application/json", {}).get("schema", {}).get("$ref") == _FASTAPI_422:
                del responses["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def error_response(
    message: str, status: int, *, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The JSON error body every route returns: ``{"error": message}`` (plus ``field``)."""
    body: dict[str, str] = {"error": message}
    if field is not None:
        body["field"] = field
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def response_for(exc: BaseException, *, with_field: bool = True) -> Response:
    """Translate any exception into its error response, logging server-side failures.

    ``with_field`` adds the offending request field (``/v1``); ``/v2`` bodies hold only
    ``error``.
    """
    status = status_for(exc)
    message = str(exc) or type(exc).__name__
    if status >= 500 and not isinstance(exc, OverloadedError | NotReadyError):
        logger.error("request failed: %s", message, exc_info=exc)
        if not isinstance(exc, EnsembleError):
            message = f"internal error: {type(exc).__name__}: {message}"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    field = getattr(exc, "field", None) if with_field else None
    return error_response(message, status, field=field, headers=headers)


#: How a refused cell's JSON value is named in messages.
_JSON_KINDS = {dict: "an object", list: "a list"}


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    location = [part for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return f"malformed JSON body: {first.get('msg')}", "body"
    if len(location) >= 3 and location[0] == "records":
        # A cell no member of the union takes: pydantic names each member tried
        # (records.0.age.str, .float, .bool); name the column, as the encoder does.
        row, column = location[1], location[2]
        value = first.get("input")
        got = _JSON_KINDS.get(type(value), repr(value))
        return (
            f"column '{column}' in records[{row}] takes a string, a number, true/false or "
            f"null; got {got}",
            f"records.{column}",
        )
    field = ".".join(map(str, location)) or "body"
    return f"invalid field '{field}': {first.get('msg')}", field


def response_for_request(path: str, exc: Exception) -> Response:
    """The error response of a request to ``path`` that raised ``exc``, whatever it is.

    ``/v2`` bodies hold only ``error``; ``/v1`` bodies also name the ``field``. A client
    that went away gets status 499 and nothing is logged but a debug line.
    """
    if isinstance(exc, ClientDisconnect):
        # Not a server error: every load test ends this way. No traceback, not a 500.
        logger.debug("client disconnected before the request was read: %s", path)
        return Response(status_code=CLIENT_CLOSED)
    if isinstance(exc, RequestValidationError):
        message, field = _validation_message(exc)
        return error_response(message, status_for(exc), field=field)
    if isinstance(exc, StarletteHTTPException):
        return error_response(str(exc.detail), exc.status_code, headers=exc.headers)
    return response_for(exc, with_field=not path.startswith("/v2"))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handler that turns every error into ``{"error": ...}`` JSON."""

    async def on_error(request: Request, exc: Exception) -> Response:
        return response_for_request(request.url.path, exc)

    for error in (ClientDisconnect, EnsembleError, StarletteHTTPException, RequestValidationError):
        app.add_exception_handler(error, on_error)
    app.add_exception_handler(Exception, on_error)
