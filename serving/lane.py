"""The hot lane: predict and infer requests served straight from ASGI.

FastAPI's per-request machinery (its telemetry and body-limit wrappers, the exception
middlewares, routing over every route, dependency resolution) costs about as much CPU as
a one-row prediction itself. :class:`ServingApp` is the FastAPI app with one change: a
``POST`` to a lane route (``/v1`` predict, ``/v2`` infer) skips all of it. The lane keeps
what a client relies on: the same metrics and access log and the same body limit (the
app's own middlewares, wrapped around the lane as around FastAPI), the same token check
and validation (in the route functions), and the same error bodies
(:func:`serving.errors.response_for_request`). The FastAPI routes of the same paths stay
mounted: they document the operations in the OpenAPI schema and answer other methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.errors import response_for_request


async def serve_lane_route(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a request whose ``scope["route"]`` is a matched lane route."""
    request = Request(scope, receive)
    try:
        response = await scope["route"].endpoint(request)
    except Exception as exc:
        response = response_for_request(request.url.path, exc)
    await response(scope, receive, send)


class ServingApp(FastAPI):
    """The server's FastAPI app, with its hot routes on a lane of their own.

    Call :meth:`open_lane` once the middlewares are added; until then every request takes
    the FastAPI path.
    """

    _lane_routes: Sequence[Route] = ()
    _lane: ASGIApp | None = None

    def open_lane(self, routes: Sequence[Route], wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Serve ``POST`` requests to ``routes`` on the lane.

        Parameters
        ----------
        routes : sequence of Route
            Routes whose endpoint takes a Request and returns a Response.
        wrap : callable
            Wraps the lane in the middlewares every request passes (metrics, body limit).
        """
        self._lane_routes = tuple(routes)
        self._lane = wrap(serve_lane_route)

    @property
    def lane_routes(self) -> tuple[Route, ...]:
        """The routes served on the lane."""
        return tuple(self._lane_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._lane is not None and scope["type"] == "http" and scope["method"] == "POST":
            for route in self._lane_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["app"] = self
                    await self._lane(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)
