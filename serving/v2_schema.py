"""The OpenAPI of the V2 routes: response models, the infer body's schema and its limits.

The infer routes read their raw bodies themselves (JSON, or a JSON header followed by binary
tensors), so their request schema is written here by hand; the response models document
what the routes return. Nothing here runs on the request path.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from ensembles.fused import MEMBER_TENSORS
from ensembles.manifest import OutputSpec, Task
from ensembles.uncertainty import UNCERTAINTY_NAMES
from serving.columns import COLUMN_DATATYPES
from serving.errors import (
    InvalidRequestError,
    OverloadedError,
    UnauthorizedError,
    error_responses,
)
from serving.routing import BODY_ERRORS, COMBINER_SCHEMA, LOOKUP_ERRORS
from serving.runtime import LABEL
from serving.settings import ServingSettings
from serving.v2_codec import FLOAT32_SCHEMA

#: Request parameter naming the combiner (not a reserved V2 name).
COMBINER_PARAMETER = "combiner"
#: Every output name a model can list: its combined output, the label, the uncertainty
#: measures and the per-member tensors (model metadata lists those of each model).
OUTPUT_NAMES: tuple[str, ...] = tuple(
    sorted(
        {
            *get_args(OutputSpec.model_fields["name"].annotation),
            LABEL,
            *(name for names in UNCERTAINTY_NAMES.values() for name in names),
            *MEMBER_TENSORS,
        }
    )
)


class ServerMetadata(BaseModel):
    """The server's name, version and protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class LiveInfo(BaseModel):
    """Liveness."""

    live: Literal[True]


class ReadyInfo(BaseModel):
    """Readiness of the server."""

    ready: Literal[True]


class ModelReadyInfo(BaseModel):
    """Readiness of a model or version."""

    name: str
    ready: Literal[True]


class TensorInfo(BaseModel):
    """A tensor of the model metadata; ``-1`` marks the batch axis."""

    name: str
    datatype: str
    shape: list[int]


class ModelParameters(BaseModel):
    """Our facts about the version described, beyond the protocol's."""

    version: str
    task: Task
    classes: list[str] | None
    combiners: list[str] = Field(description="The fitted combiners, for `parameters.combiner`.")
    default_combiner: str
    combiner_parameter: str


class ModelMetadata(BaseModel):
    """V2 model metadata; uncertainty measures and member outputs are listed as outputs."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parameters: ModelParameters


class RepositoryEntry(BaseModel):
    """One version of the repository index."""

    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str | None = Field(default=None, description="Why it is not ready, when known.")


class OutputTensor(BaseModel):
    """One output of an inference response: row-major ``data``, or binary after the JSON."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = Field(
        default=None, description="`binary_data_size` of a binary output."
    )
    data: list[float | int] | None = None


class InferResponse(BaseModel):
    """A V2 inference response (the JSON header alone, when outputs are binary)."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    id: str | None = Field(default=None, description="The request's id, when it had one.")
    parameters: dict[str, Any] = Field(description="`combiner`: the combiner that answered.")
    outputs: list[OutputTensor]


_BATCH_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1}
_BINARY_SIZE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "binary_data_size": {
            "type": "integer",
            "minimum": 0,
            "description": "Binary bodies only: the bytes of this input after the JSON "
            "header (then `data` is absent).",
        }
    },
}
_CELL_SCHEMA: dict[str, Any] = {
    "type": ["number", "string", "boolean", "null"],
    "description": "A number, a category's text, a flag, or `null` for a missing cell.",
}
#: JSON schema of a plain ensemble's one input: the ``[batch, n_features]`` FP32 matrix.
_MATRIX_INPUT_SCHEMA: dict[str, Any] = {
    "title": "Matrix input",
    "description": "A plain ensemble's one input; its name and width are in the model metadata.",
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string", "description": "The model's input (see model metadata)."},
        "shape": {
            "type": "array",
            "description": "`[batch, n_features]`; at most `max_batch_rows` rows.",
            "prefixItems": [_BATCH_SCHEMA, {"type": "integer", "minimum": 1}],
            "minItems": 2,
            "maxItems": 2,
        },
        "datatype": {"type": "string", "enum": ["FP32"]},
        "parameters": _BINARY_SIZE_SCHEMA,
        "data": {
            "type": "array",
            "minItems": 1,
            "description": "Row-major values, flat or nested by row; as many as the shape says.",
            "items": {"anyOf": [FLOAT32_SCHEMA, {"type": "array", "items": FLOAT32_SCHEMA}]},
        },
    },
}
#: JSON schema of one column of a table ensemble (one input per column, the convention of
#: MLServer's pandas codec); the model metadata lists each column's name and datatype.
_COLUMN_INPUT_SCHEMA: dict[str, Any] = {
    "title": "Column input",
    "description": "One column of a table ensemble: `BYTES` for categories and flags, `FP64` "
    "for numbers (the model metadata lists every column and its datatype; numbers may also "
    "come as FP32 or integers, flags as BOOL).",
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string", "description": "A column (see model metadata)."},
        "shape": {
            "type": "array",
            "description": "`[batch, 1]` or `[batch]`; at most `max_batch_rows` rows.",
            "prefixItems": [_BATCH_SCHEMA, {"const": 1}],
            "minItems": 1,
            "maxItems": 2,
        },
        "datatype": {"type": "string", "enum": list(COLUMN_DATATYPES)},
        "parameters": _BINARY_SIZE_SCHEMA,
        "data": {
            "type": "array",
            "minItems": 1,
            "description": "The column's cells, flat or one per row; as many as the shape says.",
            "items": {
                "anyOf": [
                    _CELL_SCHEMA,
                    {"type": "array", "items": _CELL_SCHEMA, "minItems": 1, "maxItems": 1},
                ]
            },
        },
    },
}
_BINARY_FLAG = {"type": "boolean"}
#: OpenAPI description of the infer body (the routes read the raw body themselves: JSON, or
#: a JSON header followed by binary tensors).
INFER_BODY: dict[str, Any] = {
    "description": "A V2 inference request. With binary tensors, the body is this JSON header "
    "followed by the raw little-endian tensor bytes, and the header "
    "`Inference-Header-Content-Length` gives the JSON length. `Content-Encoding: gzip` or "
    "`deflate` is accepted.",
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string", "description": "Echoed in the response."},
                    "parameters": {
                        "type": "object",
                        "properties": {
                            COMBINER_PARAMETER: COMBINER_SCHEMA,
                            "binary_data_output": _BINARY_FLAG,
                        },
                        "description": f"`{COMBINER_PARAMETER}`: a fitted combiner; "
                        "`binary_data_output`: binary outputs by default.",
                    },
                    "inputs": {
                        "type": "array",
                        "minItems": 1,
                        "description": "A plain ensemble takes one FP32 matrix, a table "
                        "ensemble one input per column; model metadata lists them.",
                        "items": {"anyOf": [_MATRIX_INPUT_SCHEMA, _COLUMN_INPUT_SCHEMA]},
                    },
                    "outputs": {
                        "type": "array",
                        "description": "Outputs to return, each once; all but per-member ones "
                        "if omitted or empty. Model metadata lists those of each model.",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string", "enum": list(OUTPUT_NAMES)},
                                "parameters": {
                                    "type": "object",
                                    "properties": {"binary_data": _BINARY_FLAG},
                                },
                            },
                        },
                    },
                },
            },
            "example": {
                "id": "request-1",
                "parameters": {COMBINER_PARAMETER: "mean"},
                "inputs": [
                    {
                        "name": "input",
                        "shape": [2, 4],
                        "datatype": "FP32",
                        "data": [0.1, 0.2, 0.3, 0.4, 1.0, 2.0, 3.0, 4.0],
                    }
                ],
                "outputs": [{"name": "probabilities"}, {"name": "variance"}],
            },
        }
    },
}
INFER_OPENAPI = {"requestBody": INFER_BODY}
#: The answers of the infer routes: JSON, or binary outputs after the JSON header.
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The outputs asked for, as JSON or (binary outputs) as the JSON header "
        "followed by their bytes, its length in `Inference-Header-Content-Length`.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    **error_responses(
        *LOOKUP_ERRORS,
        *BODY_ERRORS,
        UnauthorizedError,
        InvalidRequestError,
        OverloadedError,
    ),
}


def document_limits(schema: dict[str, Any], settings: ServingSettings) -> None:
    """Write this server's row limit into the OpenAPI infer bodies, in place."""
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        for form in body["schema"]["properties"]["inputs"]["items"]["anyOf"]:
            form["properties"]["shape"]["prefixItems"][0]["maximum"] = settings.max_batch_rows
