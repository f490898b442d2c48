"""The Open Inference Protocol (KServe V2) routes: metadata, health, readiness and infer."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response
from starlette.routing import Route

from ensembles.errors import NotFoundError
from ensembles.fused import MEMBER_OUTPUTS, MEMBER_TENSORS, MEMBER_VARIANCES
from ensembles.store import MAX_VERSION_DIGITS, VERSION_PATTERN
from serving.errors import (
    BodyTooLargeError,
    InvalidRequestError,
    ModelUnavailableError,
    NotReadyError,
    UnauthorizedError,
    VersionRefusedError,
    error_responses,
)
from serving.offload import body_is_large, encode_off_loop, run_sized
from serving.registry import EnsembleRegistry
from serving.routing import (
    LOOKUP_ERRORS,
    EnsembleName,
    LeanRoute,
    Registry,
    VersionText,
    json_response,
    mark_served,
)
from serving.runtime import LABEL, EnsembleRuntime, Prediction
from serving.security import require_token
from serving.v2_codec import (
    HEADER_LENGTH,
    InferRequest,
    decode_infer_request,
    decompress,
    encode_infer_response,
)
from serving.v2_schema import (
    COMBINER_PARAMETER,
    INFER_OPENAPI,
    INFER_RESPONSES,
    InferResponse,
    LiveInfo,
    ModelMetadata,
    ModelReadyInfo,
    ReadyInfo,
    RepositoryEntry,
    ServerMetadata,
)

router = APIRouter(prefix="/v2", tags=["v2"])
SERVER_NAME = "ensembles"
#: The installed distribution's version (``pyproject.toml``), not a copy of it.
try:
    SERVER_VERSION = version(SERVER_NAME)
except PackageNotFoundError:  # run from a source tree that was never installed
    SERVER_VERSION = "0+unknown"
EXTENSIONS = ["binary_tensor_data"]
#: The codec decodes at most this many full requests' worth of elements per input
#: (``max_batch_rows * n_features`` each). It bounds decoding memory while leaving
#: headroom, so a request somewhat over the row limit is still decoded and refused by the
#: runtime with its clearer "N rows is over the limit of M rows" message.
_DECODE_HEADROOM = 4


def parse_version(version: str | None) -> int | None:
    """A V2 version string as an int.

    Parameters
    ----------
    version : str or None
        The ``{version}`` of a V2 path; None or ``""`` for the current version.

    Returns
    -------
    int or None
        The version number, or None for the current version.

    Raises
    ------
    InvalidRequestError
        When ``version`` is not a positive integer.
    """
    if version is None or version == "":
        return None
    if not VERSION_PATTERN.fullmatch(version):
        raise InvalidRequestError(
            f"model version must be a positive integer of at most {MAX_VERSION_DIGITS} digits, "
            f"without leading zeros; got '{version}'"
        )
    return int(version)


@router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> Response:
    """Name, version and supported protocol extensions."""
    return json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})


@router.get("/health/live", summary="Liveness", response_model=LiveInfo)
async def live() -> Response:
    """200 while the process answers."""
    return json_response({"live": True})


@router.get(
    "/health/ready",
    summary="Readiness",
    response_model=ReadyInfo,
    responses=error_responses(NotReadyError),
)
async def ready(registry: Registry) -> Response:
    """200 once the store has been scanned and loaded, 503 before."""
    if not registry.ready:
        raise NotReadyError("the server is still loading the model store")
    return json_response({"ready": True})


@router.get(
    "/models/{name}/ready",
    summary="Model readiness",
    response_model=ModelReadyInfo,
    responses=error_responses(ModelUnavailableError),
)
async def model_ready(name: EnsembleName, registry: Registry) -> Response:
    """200 when the model has a loaded version, else 400."""
    if registry.loaded(name) is None:
        raise ModelUnavailableError(f"model '{name}' is not ready")
    return json_response({"name": name, "ready": True})


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model version readiness",
    response_model=ModelReadyInfo,
    responses=error_responses(ModelUnavailableError, InvalidRequestError),
)
async def model_version_ready(
    name: EnsembleName, version: VersionText, registry: Registry, request: Request
) -> Response:
    """200 when that version serves, else 400 with the reason.

    A version the metadata lists but no request has asked for yet loads here, as an
    inference request naming it would load it: a client that waits for the version to be
    ready before it pins requests to it gets its answer instead of waiting forever. Where
    the server has a token, only a probe that carries it loads (loading is the work of
    an inference request); any other probe is answered from what is loaded.
    """
    number = parse_version(version)
    if registry.loaded(name, number) is None:
        try:
            await require_token(request)
        except UnauthorizedError as exc:
            raise ModelUnavailableError(
                f"model '{name}' version {number} is not ready: it is not loaded (a request "
                "with the server's token, this probe or an inference, loads it)"
            ) from exc
    try:
        await registry.get(name, number)
    except (NotFoundError, VersionRefusedError, NotReadyError) as exc:
        raise ModelUnavailableError(f"model '{name}' version {number} is not ready: {exc}") from exc
    return json_response({"name": name, "ready": True})


def model_metadata_of(registry: EnsembleRegistry, runtime: EnsembleRuntime) -> dict[str, Any]:
    """V2 model metadata; uncertainty measures and member outputs are listed as outputs.

    Parameters
    ----------
    registry : EnsembleRegistry
        For the versions of the model that are loaded.
    runtime : EnsembleRuntime
        The version described.

    Returns
    -------
    dict
        The V2 metadata response: ``name``, ``versions``, ``platform``, ``inputs`` (one,
        shape ``[-1, n_features]``; for a table ensemble one per column, shape ``[-1, 1]``,
        ``BYTES`` for categories and flags, ``FP64`` for numbers), ``outputs`` (name,
        datatype and shape, ``-1`` for the batch axis) and ``parameters`` (version, task,
        classes, combiners).
    """
    entry = registry.version_states(runtime.name)
    manifest = runtime.manifest
    return {
        "name": runtime.name,
        # The versions a request may name (V2: "may be explicitly requested"): loaded ones
        # and those that load on demand; refused ones answer 409.
        "versions": [str(s["version"]) for s in entry if s["state"] != "refused"],
        "platform": "ensemble_onnxruntime",
        "inputs": (
            runtime.table_input.metadata()
            if runtime.table_input.is_table
            else [
                {"name": manifest.input.name, "datatype": "FP32", "shape": [-1, runtime.n_features]}
            ]
        ),
        "outputs": [
            {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}
            for spec in runtime.outputs
        ],
        "parameters": {
            "version": str(runtime.version),
            "task": runtime.task,
            "classes": manifest.classes,
            "combiners": sorted(runtime.combiners),
            "default_combiner": manifest.default_combiner,
            "combiner_parameter": COMBINER_PARAMETER,
        },
    }


@router.get(
    "/models/{name}",
    summary="Model metadata",
    response_model=ModelMetadata,
    responses=error_responses(*LOOKUP_ERRORS),
)
async def model_metadata(name: EnsembleName, registry: Registry) -> Response:
    """Inputs and outputs of the version served by default."""
    return json_response(model_metadata_of(registry, await registry.get(name)))


@router.get(
    "/models/{name}/versions/{version}",
    summary="Model version metadata",
    response_model=ModelMetadata,
    responses=error_responses(*LOOKUP_ERRORS, InvalidRequestError),
)
async def model_version_metadata(
    name: EnsembleName, version: VersionText, registry: Registry
) -> Response:
    """Inputs and outputs of one version."""
    runtime = await registry.get(name, parse_version(version))
    return json_response(model_metadata_of(registry, runtime))


#: The repository index request (Triton's model repository extension): an optional body.
INDEX_BODY: dict[str, Any] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "ready": {
                        "type": "boolean",
                        "description": "true: list only the versions ready to serve.",
                    }
                },
            }
        }
    },
}


def _ready_only(body: bytes) -> bool:
    """Whether an index request asks for ready versions only (``{"ready": true}``)."""
    if not body.strip():
        return False
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"malformed JSON body: {exc}") from exc
    if not isinstance(request, dict):
        raise InvalidRequestError("the repository index body must be a JSON object")
    ready = request.get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidRequestError(f"'ready' must be true or false; got {ready!r}")
    return ready


@router.post(
    "/repository/index",
    summary="Model repository index",
    response_model=list[RepositoryEntry],
    responses=error_responses(BodyTooLargeError, InvalidRequestError),
    openapi_extra={"requestBody": INDEX_BODY},
)
async def repository_index(registry: Registry, request: Request) -> Response:
    """Every version known to this process with its state (READY or UNAVAILABLE); with
    ``{"ready": true}``, only the READY ones."""
    ready_only = _ready_only(await request.body())
    index = []
    for name in registry.names():
        for state in registry.version_states(name):
            ready = state["state"] == "loaded"
            if ready_only and not ready:
                continue
            entry = {
                "name": name,
                "version": str(state["version"]),
                "state": "READY" if ready else "UNAVAILABLE",
            }
            if state["reason"]:
                entry["reason"] = state["reason"]
            index.append(entry)
    return json_response(index)


def _tensors(runtime: EnsembleRuntime, prediction: Prediction) -> dict[str, np.ndarray | None]:
    tensors: dict[str, np.ndarray | None] = {runtime.manifest.output.name: prediction.combined}
    if prediction.labels is not None:
        tensors[LABEL] = prediction.labels
    tensors.update(prediction.uncertainty)
    tensors[MEMBER_OUTPUTS] = prediction.member_outputs
    tensors[MEMBER_VARIANCES] = prediction.member_variances
    return tensors


async def _infer(
    request: Request, registry: EnsembleRegistry, name: str, version: str | None
) -> Response:
    settings = request.app.state.settings
    raw, encoding = await request.body(), request.headers.get("content-encoding")
    large = body_is_large(raw, encoding)
    # The body is inflated before the version is looked up (which may load it from disk):
    # a body over the limit or of a bad encoding costs no load, as on /v1.
    body = await run_sized(large, lambda: decompress(raw, encoding, settings.max_body_bytes))
    runtime = await registry.get(name, parse_version(version))
    mark_served(request, runtime.name, runtime.version, request.headers.get("x-request-id"))
    specs = runtime.output_specs

    def decode() -> InferRequest:
        return decode_infer_request(
            body,
            request.headers.get(HEADER_LENGTH),
            name,
            runtime.input_meta,
            specs.keys(),
            max_elements=_DECODE_HEADROOM
            * settings.max_batch_rows
            * (1 if runtime.table_input.is_table else runtime.n_features),
        )

    parsed = await run_sized(large or body_is_large(body, None), decode)
    if parsed.id is not None and request.headers.get("x-request-id") is None:
        mark_served(request, runtime.name, runtime.version, parsed.id)
    combiner = parsed.parameters.get(COMBINER_PARAMETER)
    if combiner is not None and not isinstance(combiner, str):
        raise InvalidRequestError(f"parameter '{COMBINER_PARAMETER}' must be a string")
    if parsed.outputs is None:
        wanted = [(n, parsed.binary_output) for n in runtime.default_outputs]
    else:
        wanted = [(o.name, o.binary) for o in parsed.outputs]
    names = {n for n, _ in wanted}
    if runtime.table_input.is_table:
        encoded = await encode_off_loop(runtime.table_input.from_tensors, parsed.inputs)
        request.app.state.metrics.count_unseen(runtime.name, encoded.unseen)
        X = encoded.X
    else:
        X = parsed.inputs[runtime.manifest.input.name]
    prediction = await runtime.predict_async(
        X,
        combiner=combiner,
        members=not MEMBER_TENSORS.isdisjoint(names),
        uncertainty=not runtime.uncertainty_set.isdisjoint(names),
    )
    values = _tensors(runtime, prediction)
    header: dict[str, Any] = {"model_name": runtime.name, "model_version": str(runtime.version)}
    if parsed.id is not None:
        header["id"] = parsed.id
    header["parameters"] = {COMBINER_PARAMETER: prediction.combiner}
    tensors = [(n, specs[n].datatype, values[n], binary) for n, binary in wanted]
    body, headers = encode_infer_response(header, tensors, request.headers.get("accept-encoding"))
    return Response(body, headers=headers)


@router.post(
    "/models/{name}/infer",
    summary="Inference",
    dependencies=[Depends(require_token)],
    response_model=InferResponse,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_OPENAPI,
)
async def infer(name: EnsembleName, request: Request) -> Response:
    """Combined prediction, uncertainty outputs and (when asked) member outputs.

    Set ``parameters.combiner`` to any fitted combiner; request ``member_outputs`` for the
    per-member array ``[n_members, batch, n_outputs]``.
    """
    return await _infer(request, request.app.state.registry, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on a version",
    dependencies=[Depends(require_token)],
    response_model=InferResponse,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_OPENAPI,
)
async def infer_version(name: EnsembleName, version: VersionText, request: Request) -> Response:
    """As ``/v2/models/{name}/infer``, on one version."""
    return await _infer(request, request.app.state.registry, name, version)


async def _lean_infer(request: Request) -> Response:
    await require_token(request)
    params = request.path_params
    return await _infer(request, request.app.state.registry, params["name"], params.get("version"))


def lean_routes() -> list[Route]:
    """The infer routes without FastAPI's per-request machinery.

    Served on the app's lane (``serving.lane``) in place of the documented routes above
    (same paths, same code); OpenAPI still documents the FastAPI versions.
    """
    return [
        LeanRoute(path, _lean_infer, methods=["POST"])
        for path in (
            "/v2/models/{name}/infer",
            "/v2/models/{name}/versions/{version}/infer",
        )
    ]
