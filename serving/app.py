"""The application factory: routes, error handlers, middleware and model loading at startup."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import api_v1, api_v2, v2_schema
from serving.errors import drop_framework_errors, install_error_handlers
from serving.lane import ServingApp
from serving.metrics import ServingMetrics
from serving.registry import EnsembleRegistry
from serving.routing import SERVED_KEY
from serving.security import BodyLimitMiddleware, document_token
from serving.settings import ServingSettings, get_settings

logger = logging.getLogger(__name__)
#: One line per request when ``access_log`` is on (JSON with the log_json formatter).
access_logger = logging.getLogger("serving.access")

DESCRIPTION = """
Combined predictions of neural-network ensembles with their uncertainty.

* `/v1`: our REST API: list and describe ensembles, predict rows with variance and the
  other uncertainty measures, choose a combiner, get per-member outputs, reload the store.
* `/v2`: the Open Inference Protocol (KServe V2, Triton's HTTP API) with binary tensors;
  uncertainty measures are extra output tensors, `parameters.combiner` picks a combiner and
  the output `member_outputs` returns every member's outputs.
* `/metrics`: Prometheus metrics, including drift against the held-out data.
"""


class MetricsMiddleware:
    """Count requests by route template, method and status, time them, and (optionally)
    write one access log line per request."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        #: (route, method, status) -> its request counter and latency histogram: a label
        #: lookup costs as much as the observation.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - start
            key = (path, scope["method"], status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self.metrics.requests.labels(path, scope["method"], str(status)),
                    self.metrics.latency.labels(path),
                )
            children[0].inc()
            children[1].observe(elapsed)
            if self.access_log:
                self._log(scope, path, status, elapsed)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, elapsed: float) -> None:
        ensemble, version, request_id = scope.get(SERVED_KEY) or (None, None, None)
        if request_id is None:
            for key, value in scope["headers"]:
                if key == b"x-request-id":
                    request_id = value.decode("latin-1")
                    break
        access_logger.info(
            "%s %s %d",
            scope["method"],
            route,
            status,
            extra={
                "route": route,
                "method": scope["method"],
                "status": status,
                "latency_ms": round(elapsed * 1e3, 3),
                "ensemble": ensemble
                if ensemble is not None
                else scope.get("path_params", {}).get("name"),
                "version": version,
                "request_id": request_id or uuid.uuid4().hex[:16],
            },
        )


def install_openapi(app: FastAPI, settings: ServingSettings) -> None:
    """Serve an OpenAPI schema that describes this server as configured.

    FastAPI's schema of the routes, with its own 422 body removed, this server's row limits
    written in, and the bearer token (with its 401) declared exactly when one is set.
    Built once, on the first request for it.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # Copied: the route declarations share their dicts with module constants.
            schema = copy.deepcopy(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
            drop_framework_errors(schema)
            api_v1.document_limits(schema, settings)
            v2_schema.document_limits(schema, settings)
            document_token(schema, guarded=settings.token is not None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: ServingSettings | None = None) -> ServingApp:
    """Build the server.

    Parameters
    ----------
    settings : ServingSettings, optional
        Defaults to :func:`serving.settings.get_settings` (environment variables).

    Returns
    -------
    ServingApp
        A FastAPI app whose predict and infer routes take the hot lane
        (``serving.lane``), with ``state.settings``, ``state.metrics`` and
        ``state.registry``; the store is loaded when the app starts (lifespan) and polled
        every ``poll_interval_s``.
    """
    settings = settings or get_settings()
    logging.captureWarnings(True)  # a numpy or library warning is a log line like any other
    metrics = ServingMetrics()
    registry = EnsembleRegistry(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.exposed and settings.token is None:
            logger.warning(
                "binding %s, which other machines can reach, without a token: anyone who "
                "can connect may predict and reload; set ENSEMBLES_TOKEN or bind 127.0.0.1",
                settings.host,
            )
        await registry.refresh()
        logger.info(
            "serving %d ensembles from %s",
            len(registry.names()),
            settings.store,
            extra={"ensembles": registry.names()},
        )
        background = [asyncio.create_task(metrics.fold_forever())]
        if settings.poll_interval_s > 0:
            background.append(asyncio.create_task(registry.poll_forever()))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await registry.close()
            metrics.close()

    app = ServingApp(
        title="Ensemble serving",
        version=api_v2.SERVER_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = registry
    install_error_handlers(app)
    app.include_router(api_v1.router)
    app.include_router(api_v2.router)
    install_openapi(app, settings)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, access_log=settings.access_log)
    app.open_lane([*api_v1.lean_routes(), *api_v2.lean_routes()], after_answer=metrics.fold_soon)
    return app
