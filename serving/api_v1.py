"""Our REST API (``/v1``): list ensembles, describe one, predict with uncertainty, reload."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    WithJsonSchema,
)
from starlette.responses import Response
from starlette.routing import Route

from ensembles.errors import NotFoundError, StoreError
from ensembles.manifest import StrategyInfo, Task
from ensembles.store import validate_name
from ensembles.tabular import TabularSpec
from serving.errors import (
    BodyTooLargeError,
    InvalidRequestError,
    OverloadedError,
    UnauthorizedError,
    UnsupportedContentTypeError,
    error_responses,
)
from serving.offload import body_is_large, encode_off_loop, run_sized
from serving.registry import EnsembleRegistry, LoadState
from serving.routing import (
    BODY_ERRORS,
    COMBINER_SCHEMA,
    LOOKUP_ERRORS,
    EnsembleName,
    LeanRoute,
    Registry,
    json_response,
    mark_served,
)
from serving.runtime import EnsembleRuntime, Prediction
from serving.security import require_token
from serving.settings import ServingSettings
from serving.v2_codec import FLOAT32_SCHEMA, decompress, integral

router = APIRouter(prefix="/v1", tags=["v1"])
#: A feature value. JSON numbers within float32 range; a larger one becomes infinite and
#: is refused by the runtime (400), so the bound is documented rather than enforced here.
Number = Annotated[float, Strict(), WithJsonSchema(FLOAT32_SCHEMA)]
Combiner = Annotated[str, WithJsonSchema(COMBINER_SCHEMA)]
#: One cell of a record: a category, a number, a flag, or null for a missing value.
Cell = Annotated[str, Strict()] | Number | Annotated[bool, Strict()] | None
#: A version number: a positive JSON integer, ``3`` or ``3.0``, never ``"3"`` or ``true``.
Version = Annotated[int, Strict(), Field(ge=1), BeforeValidator(integral)]


class PredictRequest(BaseModel):
    """Rows to predict and how."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"rows": [[0.0, 1.5, -0.3, 2.0]], "combiner": "mean", "members": True},
                {"rows": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]], "version": 1},
                {"records": [{"state": "KS", "account_length": 128, "plan": "no", "age": None}]},
            ]
        },
    )

    # The size limits are documented; the runtime checks them with its own messages (400).
    rows: list[Annotated[list[Number], Field(json_schema_extra={"minItems": 1})]] | None = Field(
        default=None,
        description="Feature rows, shape (n_samples, n_features), in manifest feature order; "
        "every row as long as the ensemble has features, at most `max_batch_rows` rows. "
        "Numeric ensembles only; give `rows` or `records`.",
        json_schema_extra={"minItems": 1},
    )
    records: list[dict[str, Cell]] | None = Field(
        default=None,
        description="Rows as objects keyed by column name: numbers, strings for categories, "
        "true/false or the training spellings for flags, null for a missing cell; every "
        "column of the ensemble in every record. Give `rows` or `records`.",
        json_schema_extra={"minItems": 1},
    )
    combiner: Combiner | None = Field(
        default=None,
        description="A fitted combiner (see ensemble info), 'weight_average' included; "
        "default combiner when omitted.",
    )
    members: Annotated[bool, Strict()] = Field(
        default=False, description="Also return every member's outputs."
    )
    uncertainty: Annotated[bool, Strict()] = Field(
        default=True, description="Compute the uncertainty measures."
    )
    version: Version | None = Field(default=None, description="Version; current if omitted.")


class PredictResponse(BaseModel):
    """Combined predictions with their uncertainty, column by column (row i at index i)."""

    ensemble: str
    version: int
    combiner: str
    n_samples: int
    predictions: dict[str, list[Any]] = Field(
        description="Classification: 'label' (class names), 'class_index', 'probabilities' "
        "(n_samples, n_classes). Regression: 'value' (n_samples, n_targets)."
    )
    uncertainty: dict[str, list[Any]] = Field(
        description="'variance' across members and the other measures of the task: entropy, "
        "mutual information and agreement; or aleatoric/total variance and the interval."
    )
    members: dict[str, Any] | None = Field(
        default=None, description="'ids' and 'outputs' (n_members, n_samples, n_outputs)."
    )


class EnsembleSummary(BaseModel):
    """One ensemble of the list; the version facts are null while none is loaded."""

    name: str
    version: int | None
    task: Task | None
    n_members: int | None
    default_combiner: str | None


class StoreInfo(BaseModel):
    """Whether the store folder exists, how many ensembles it holds, and what to do if not."""

    exists: bool
    ensembles: int
    hint: str | None = None


class EnsembleList(BaseModel):
    """Every ensemble known to the server."""

    ensembles: list[EnsembleSummary]
    store: StoreInfo


class VersionInfo(BaseModel):
    """The load state of one version in this process."""

    version: int
    state: LoadState
    current: bool = Field(description="Whether this version is served by default.")
    reason: str | None = Field(description="Why it was refused (or is not loaded).")
    since: str = Field(description="When it entered this state (ISO 8601, UTC).")


class MemberSummary(BaseModel):
    """One member of an ensemble."""

    id: str
    seed: int
    epoch: int | None
    cycle: int | None
    val_metrics: dict[str, float]


class CombinerSummary(BaseModel):
    """One fitted combiner with its scores."""

    kind: str
    test_metrics: dict[str, float]
    heldout_metrics: dict[str, float]
    fitted_on: dict[str, Any]


class FallbackInfo(BaseModel):
    """Why the version served is not the newest one wanted."""

    serving: int | None = Field(description="The version served; null when none could be.")
    newest: int = Field(description="The newest version the latest pointer allows.")
    reason: str = Field(description="Why each newer version was not served.")


class EnsembleInfo(BaseModel):
    """An ensemble's versions and, when one is loaded, the facts of the served version."""

    name: str
    version: int | None = Field(description="The served version; null while none is loaded.")
    versions: list[VersionInfo]
    latest_error: str | None
    fallback: FallbackInfo | None = Field(
        default=None,
        description="While an older version serves because the newest wanted one was "
        "refused: which version serves, the newest one, and why.",
    )
    created: str | None = None
    task: Task | None = None
    features: list[str] | None = None
    preprocessing: TabularSpec | None = Field(
        default=None,
        description="A table ensemble's raw columns, as records and V2 column inputs take "
        "them (name, kind, a flag's spellings, a category's levels); null for one that "
        "takes rows of numbers.",
    )
    n_features: int | None = None
    classes: list[str] | None = None
    n_outputs: int | None = None
    strategy: StrategyInfo | None = None
    members: list[MemberSummary] | None = None
    combiners: dict[str, CombinerSummary] | None = None
    default_combiner: str | None = None
    baselines: dict[str, dict[str, float]] | None = None
    uncertainty: list[str] | None = Field(default=None, description="The measures returned.")
    feature_drift: dict[str, float] | None = Field(
        default=None,
        description="The most drifted features of the recent rows this worker served (name -> "
        "population stability index against held-out quantile bins, largest first); null "
        "before any.",
    )


@router.get("/ensembles", summary="List ensembles", response_model=EnsembleList)
async def list_ensembles(registry: Registry) -> Response:
    """Every ensemble known to the server with the version it serves."""
    items = []
    for name in registry.names():
        runtime = registry.current(name)
        items.append(
            {
                "name": name,
                "version": None if runtime is None else runtime.version,
                "task": None if runtime is None else runtime.task,
                "n_members": None if runtime is None else runtime.n_members,
                "default_combiner": None if runtime is None else runtime.manifest.default_combiner,
            }
        )
    return json_response({"ensembles": items, "store": registry.store_info()})


def ensemble_info(registry: EnsembleRegistry, name: str) -> dict[str, Any]:
    """Task, features, classes, members, strategy, combiners and version states.

    Parameters
    ----------
    registry : EnsembleRegistry
        The registry serving the ensemble.
    name : str
        Ensemble name.

    Returns
    -------
    dict
        ``name``, ``version`` (None while no version is loaded), ``versions`` (every
        version's load state), ``latest_error``, ``fallback`` (while an older version
        serves because the newest wanted one was refused: which and why, else None); with a
        loaded version also its manifest facts (``task``, ``features``, ``preprocessing``
        (a table ensemble's raw columns), ``n_features``,
        ``classes``, ``n_outputs``, ``strategy``, ``members``, ``combiners``,
        ``default_combiner``, ``baselines``), the ``uncertainty`` measures it returns and
        its ``feature_drift`` (see :meth:`serving.metrics.ServingMetrics.feature_drift`).

    Raises
    ------
    StoreError
        When the name is invalid.
    NotFoundError
        When the store has no version of ``name``.
    """
    validate_name(name)
    versions = registry.version_states(name)
    if not versions:
        raise NotFoundError(registry.unknown_message(name))
    runtime = registry.current(name)
    info: dict[str, Any] = {
        "name": name,
        "version": None,
        "versions": versions,
        "latest_error": registry.latest_error(name),
        "fallback": registry.fallback(name),
    }
    if runtime is None:
        return info
    m = runtime.manifest
    info.update(
        version=m.version,
        created=m.created,
        task=m.task,
        features=m.input.feature_names,
        preprocessing=None if m.preprocessing is None else m.preprocessing.model_dump(),
        n_features=m.input.n_features,
        classes=m.classes,
        n_outputs=m.output.n_outputs,
        strategy=m.strategy.model_dump(),
        members=[
            {
                "id": member.id,
                "seed": member.seed,
                "epoch": member.epoch,
                "cycle": member.cycle,
                "val_metrics": member.val_metrics,
            }
            for member in m.members
        ],
        combiners={
            key: {
                "kind": c.kind,
                "test_metrics": c.test_metrics,
                "heldout_metrics": c.heldout_metrics,
                "fitted_on": c.fitted_on,
            }
            for key, c in m.combiners.items()
        },
        default_combiner=m.default_combiner,
        baselines=m.baselines,
        uncertainty=list(runtime.uncertainty_names),
        feature_drift=None if registry.metrics is None else registry.metrics.feature_drift(runtime),
    )
    return info


@router.get(
    "/ensembles/{name}",
    summary="Describe an ensemble",
    response_model=EnsembleInfo,
    responses=error_responses(StoreError, NotFoundError),
)
async def describe(name: EnsembleName, registry: Registry) -> Response:
    """Everything about the served version, and every version's load state (refusals too)."""
    return json_response(ensemble_info(registry, name))


async def _features(runtime: EnsembleRuntime, body: PredictRequest, request: Request) -> np.ndarray:
    """The member input of a request: its ``rows``, or its ``records`` encoded."""
    table = runtime.table_input
    if (body.rows is None) == (body.records is None):
        raise InvalidRequestError("give either 'rows' or 'records'", field="body")
    if body.records is not None:
        encoded = await encode_off_loop(table.from_records, body.records)
        request.app.state.metrics.count_unseen(runtime.name, encoded.unseen)
        return encoded.X
    if table.is_table:
        raise InvalidRequestError(
            f"'{runtime.name}' was trained on a table: send 'records' with its columns "
            f"({', '.join(table.spec.column_names)}), not encoded 'rows'",
            field="rows",
        )
    return _rows(body.rows)


def _rows(rows: list[list[float]]) -> np.ndarray:
    if not rows:
        raise InvalidRequestError("empty batch: send at least one row", field="rows")
    try:
        with np.errstate(over="ignore"):  # beyond float32 becomes inf: the runtime refuses it
            return np.asarray(rows, dtype=np.float32)
    except ValueError as exc:
        lengths = sorted({len(row) for row in rows})
        raise InvalidRequestError(
            f"rows must all have the same length; got lengths {lengths}", field="rows"
        ) from exc


def prediction_body(runtime: EnsembleRuntime, prediction: Prediction) -> dict[str, Any]:
    """The JSON body of a prediction, float32 like the ``/v2`` tensors.

    Parameters
    ----------
    runtime : EnsembleRuntime
        The version that made the prediction (for its name, classes and member ids).
    prediction : Prediction
        Its result for ``n_samples`` rows.

    Returns
    -------
    dict
        ``ensemble``, ``version``, ``combiner``, ``n_samples``; ``predictions``: ``label``
        (n_samples,), ``class_index`` (n_samples,) and ``probabilities``
        (n_samples, n_classes) for classification, ``value`` (n_samples, n_outputs) for
        regression; ``uncertainty``: each measure (n_samples, n_outputs) or (n_samples,);
        with member outputs also ``members``: ``ids``, ``outputs``
        (n_members, n_samples, n_outputs) and, for Gaussian-head members, ``variances`` of
        the same shape. Values stay numpy arrays (floats as float32) for the JSON encoder.
    """
    combined = prediction.combined.astype(np.float32)
    if prediction.labels is not None:
        classes = runtime.manifest.classes or [str(k) for k in range(runtime.n_outputs)]
        predictions = {
            "label": [classes[k] for k in prediction.labels.tolist()],
            "class_index": prediction.labels,
            "probabilities": combined,
        }
    else:
        predictions = {"value": combined}
    body: dict[str, Any] = {
        "ensemble": runtime.name,
        "version": runtime.version,
        "combiner": prediction.combiner,
        "n_samples": len(combined),
        "predictions": predictions,
        "uncertainty": {k: v.astype(np.float32) for k, v in prediction.uncertainty.items()},
    }
    if prediction.member_outputs is not None:
        members = {
            "ids": [member.id for member in runtime.manifest.members],
            "outputs": prediction.member_outputs.astype(np.float32),
        }
        if prediction.member_variances is not None:
            members["variances"] = prediction.member_variances.astype(np.float32)
        body["members"] = members
    return body


async def _predict(
    registry: EnsembleRegistry, name: str, body: PredictRequest, request: Request
) -> Response:
    runtime = await registry.get(name, body.version)
    mark_served(request, runtime.name, runtime.version, request.headers.get("x-request-id"))
    X = await _features(runtime, body, request)
    prediction = await runtime.predict_async(
        X, combiner=body.combiner, members=body.members, uncertainty=body.uncertainty
    )
    return json_response(prediction_body(runtime, prediction))


@router.post(
    "/ensembles/{name}/predict",
    summary="Predict with uncertainty",
    dependencies=[Depends(require_token)],
    response_model=PredictResponse,
    responses=error_responses(
        *LOOKUP_ERRORS,
        *BODY_ERRORS,
        UnauthorizedError,
        InvalidRequestError,
        RequestValidationError,
        UnsupportedContentTypeError,
        OverloadedError,
    ),
)
async def predict(
    name: EnsembleName, body: PredictRequest, registry: Registry, request: Request
) -> Response:
    """Combined prediction, variance and the other uncertainty measures for every row."""
    # Served by the lean route of lean_routes() (same path, same checks); this declaration
    # documents the request and response in the OpenAPI schema.
    return await _predict(registry, name, body, request)


def parse_predict_body(raw: bytes) -> PredictRequest:
    """Parse and validate a predict body in one pass (pydantic's JSON parser).

    Raises
    ------
    RequestValidationError
        With the same locations (``body``, field path) and messages as FastAPI's body
        validation, so the error handler answers the same 422s.
    """
    try:
        return PredictRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])}
            for error in exc.errors(include_url=False, include_context=False)
        ]
        raise RequestValidationError(errors) from None


def _check_json_content_type(content_type: str | None) -> None:
    """Refuse a body declared as anything but JSON; a body declared as nothing is read.

    Raises
    ------
    UnsupportedContentTypeError
        For e.g. ``text/csv``, or curl's ``-d`` default ``application/x-www-form-urlencoded``.
    """
    if content_type is None:
        return
    media = content_type.partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedContentTypeError(
            f"Content-Type '{media}' is not JSON: send the body as application/json "
            "(curl: -H 'Content-Type: application/json')"
        )


async def _lean_predict(request: Request) -> Response:
    await require_token(request)
    _check_json_content_type(request.headers.get("content-type"))
    raw, encoding = await request.body(), request.headers.get("content-encoding")
    limit = request.app.state.settings.max_body_bytes
    body = await run_sized(
        body_is_large(raw, encoding),
        lambda: parse_predict_body(decompress(raw, encoding, limit)),
    )
    return await _predict(request.app.state.registry, request.path_params["name"], body, request)


def lean_routes() -> list[Route]:
    """The predict route without FastAPI's body parsing and dependency machinery.

    FastAPI parses JSON bodies with ``json.loads`` and then validates the Python objects
    (about 4x the CPU of :meth:`PredictRequest.model_validate_json` for 64 rows); this
    route, served on the app's lane (``serving.lane``), reads the raw body and validates it
    in one pass; it also honours ``Content-Encoding: gzip | deflate``. OpenAPI still
    documents the FastAPI route.
    """
    return [LeanRoute("/v1/ensembles/{name}/predict", _lean_predict, methods=["POST"])]


@router.post(
    "/admin/reload",
    summary="Rescan the store now",
    dependencies=[Depends(require_token)],
    response_model=dict[str, list[VersionInfo]],
    responses=error_responses(BodyTooLargeError, UnauthorizedError),
)
async def reload(registry: Registry) -> Response:
    """Load any new version at once (the server also polls); returns every version's state."""
    await registry.refresh()
    return json_response({name: registry.version_states(name) for name in registry.names()})


def document_limits(schema: dict[str, Any], settings: ServingSettings) -> None:
    """Write this server's row limit into the OpenAPI ``PredictRequest``, in place."""
    rows = schema["components"]["schemas"]["PredictRequest"]["properties"]["rows"]
    rows["maxItems"] = settings.max_batch_rows
