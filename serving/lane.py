"""The hot lane: predict and infer requests served straight from ASGI.

FastAPI's per-request machinery (its telemetry and body-limit wrappers, the exception
middlewares, routing over every route, dependency resolution) costs about as much CPU as
a one-row prediction itself. :class:`ServingApp` is the FastAPI app with one change: a
``POST`` to a lane route (``/v1`` predict, ``/v2`` infer) skips all of it. The lane keeps
what a client relies on: every middleware added to the app (metrics and access log, the
body limit), wrapped around the lane as around FastAPI; the token check and validation
(in the route functions); the same error bodies (:func:`serving.errors.response_for_request`).
The FastAPI routes of the same paths stay mounted: they document the operations in the
OpenAPI schema and answer other methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.errors import response_for_request


class ServingApp(FastAPI):
    """The server's FastAPI app, with its hot routes on a lane of their own.

    Call :meth:`open_lane` to serve routes on the lane; until then every request takes the
    FastAPI path. The lane's middleware stack is built on its first request, from the
    app's middlewares as they are then.
    """

    _lane_routes: tuple[Route, ...] = ()
    _lane: ASGIApp | None = None
    _after_answer: Callable[[], None] | None = None

    def open_lane(
        self, routes: Sequence[Route], after_answer: Callable[[], None] | None = None
    ) -> None:
        """Serve ``POST`` requests to ``routes`` on the lane.

        Parameters
        ----------
        routes : sequence of Route
            Routes whose endpoint takes a Request and returns a Response.
        after_answer : callable, optional
            Called on the event loop after each lane answer has been sent (deferred work).
        """
        self._lane_routes = tuple(routes)
        self._after_answer = after_answer
        self._lane = None

    @property
    def lane_routes(self) -> tuple[Route, ...]:
        """The routes served on the lane."""
        return self._lane_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route in self._lane_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["app"] = self
                    await self._lane_stack()(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    def _lane_stack(self) -> ASGIApp:
        """The lane inside the app's middlewares, outermost first as Starlette nests them."""
        if self._lane is None:
            lane: ASGIApp = self._serve_lane_route
            for middleware in reversed(self.user_middleware):
                lane = middleware.cls(lane, *middleware.args, **middleware.kwargs)
            self._lane = lane
        return self._lane

    async def _serve_lane_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a request whose ``scope["route"]`` is a matched lane route."""
        request = Request(scope, receive)
        try:
            response = await scope["route"].endpoint(request)
        except Exception as exc:
            response = response_for_request(request.url.path, exc)
        await response(scope, receive, send)
        if self._after_answer is not None:
            self._after_answer()
