"""Open Inference Protocol wire format: JSON and binary tensors in, JSON or binary out."""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ensembles.tabular import FLOAT32_MAX
from serving.errors import BodyTooLargeError, InvalidRequestError, UnsupportedEncodingError

HEADER_LENGTH = "inference-header-content-length"
#: The digits of the largest length a header may name (int64), far beyond any body.
_MAX_LENGTH_DIGITS = 19
MAX_JSON_DEPTH = 100
#: V2 datatypes with a fixed-size numpy equivalent (little-endian on the wire).
NUMPY_TYPES: dict[str, str] = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*NUMPY_TYPES, "BYTES", "BF16")
#: JSON schema of a float32 value: a JSON number that stays finite once cast to float32.
FLOAT32_SCHEMA: dict[str, Any] = {
    "type": "number",
    "minimum": -FLOAT32_MAX,
    "maximum": FLOAT32_MAX,
}


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of the request's ``outputs``: its name and whether to send it as bytes."""

    name: str
    binary: bool


@dataclass
class InferRequest:
    """A decoded inference request.

    Attributes
    ----------
    id : str or None
        The request's ``id``, echoed in the response; None when absent.
    parameters : dict of str to any
        The request's ``parameters`` object (empty when absent), e.g. ``combiner``.
    inputs : dict of str to np.ndarray
        Each array shaped as the request said.
    outputs : list of RequestedOutput, or None when the request lists none (all outputs).
    binary_output : bool
        ``parameters.binary_data_output``: the default for outputs without their own flag.
    """

    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None
    binary_output: bool = False


@dataclass(frozen=True)
class TensorMeta:
    """Expected datatype and shape (``-1`` for free dims) of a model input.

    ``alternatives`` are other datatypes the input also takes; a ``column`` input (one
    column of a table, shape ``[-1, 1]``) also takes the flat shape ``[n]`` and, for
    floating-point datatypes, JSON ``null`` for a missing cell (NaN).
    """

    datatype: str
    shape: tuple[int, ...]
    alternatives: tuple[str, ...] = ()
    column: bool = False


def integral(value: Any) -> Any:
    """A JSON number without a fraction as the int it equals (JSON has one number type).

    ``2.0`` becomes ``2``, as JSON Schema's ``integer`` reads it; anything else (fractions,
    booleans, strings) is returned unchanged for the caller's checks to refuse.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding: gzip | deflate`` without ever exceeding ``max_bytes``.

    Parameters
    ----------
    body : bytes
        The request body as received.
    encoding : str or None
        The ``Content-Encoding`` header: ``gzip``, ``deflate`` (zlib or raw), ``identity``
        or None (not compressed).
    max_bytes : int
        Largest decompressed size accepted.

    Returns
    -------
    bytes
        The decompressed body (``body`` itself when not compressed).

    Raises
    ------
    UnsupportedEncodingError
        For an encoding other than gzip, deflate or identity (HTTP 415).
    InvalidRequestError
        For data that does not decompress.
    BodyTooLargeError
        When the decompressed body is over ``max_bytes``.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedEncodingError(
            f"unsupported Content-Encoding '{encoding}'; use gzip, deflate or none"
        )
    if encoding == "gzip":
        return _inflate(body, 16 + zlib.MAX_WBITS, max_bytes, encoding)
    # "deflate" is zlib-wrapped (RFC 9110); some clients send the raw stream.
    wbits = zlib.MAX_WBITS if _zlib_header(body) else -zlib.MAX_WBITS
    return _inflate(body, wbits, max_bytes, encoding)


def _zlib_header(body: bytes) -> bool:
    """Whether ``body`` starts with a zlib header (RFC 1950: method 8, a check multiple of 31)."""
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def _inflate(body: bytes, wbits: int, max_bytes: int, encoding: str) -> bytes:
    """``body`` inflated, every stream of it (gzip allows several members) to its end."""
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(rest, max_bytes - size + 1)
        except zlib.error as exc:
            raise InvalidRequestError(f"request body is not valid {encoding} data: {exc}") from None
        size += len(part)
        if size > max_bytes or inflater.unconsumed_tail:
            raise BodyTooLargeError(
                f"decompressed request body is larger than the limit of {max_bytes} bytes"
            )
        if not inflater.eof:
            raise InvalidRequestError(
                f"request body is not valid {encoding} data: the stream is cut short"
            )
        parts.append(part)
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # zero padding after the last member, as gzip(1) allows
            return b"".join(parts)
        if encoding != "gzip":
            raise InvalidRequestError(
                f"request body is not valid {encoding} data: bytes after the end of the stream"
            )


_ESCAPE = re.compile(rb"\\.", re.DOTALL)


def json_depth_exceeds(text: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether brackets nest deeper than ``limit``, ignoring brackets inside JSON strings.

    Vectorized: escape pairs (``\\x``) are dropped first, so every remaining ``"`` opens
    or closes a string, and a bracket is inside a string when an odd number of quotes
    precede it.
    """
    codes = np.frombuffer(text, dtype=np.uint8)
    # One pass for both openers: "[" (0x5B) and "{" (0x7B) are the only bytes that equal
    # 0x7B once bit 0x20 is set (four times faster than two bytes.count calls).
    if np.count_nonzero((codes | 0x20) == 0x7B) <= limit:
        return False
    if b"\\" in text:
        codes = np.frombuffer(_ESCAPE.sub(b"", text), dtype=np.uint8)
    steps = (codes == ord("[")).astype(np.int32) + (codes == ord("{"))
    steps -= (codes == ord("]")).astype(np.int32) + (codes == ord("}"))
    in_string = (np.cumsum(codes == ord('"')) & 1).astype(bool)
    steps[in_string] = 0
    return bool(np.cumsum(steps).max() > limit)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()):  # str.isdigit() also takes '²'.
        raise InvalidRequestError(
            f"Inference-Header-Content-Length must be a non-negative integer; got {text!r}"
        )
    digits = len(text.lstrip("0"))
    if digits > _MAX_LENGTH_DIGITS:  # int() refuses strings of over 4,300 digits
        raise InvalidRequestError(
            f"Inference-Header-Content-Length has {digits} digits but the body has "
            f"{len(body)} bytes; it must be the size of the JSON header that starts the body"
        )
    length = int(text)
    if length == 0 or length > len(body):
        raise InvalidRequestError(
            f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes; "
            "it must be the size of the JSON header that starts the body"
        )
    return body[:length], body[length:]


def _load_json(text: bytes) -> dict[str, Any]:
    if json_depth_exceeds(text):
        raise InvalidRequestError(f"request JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"malformed JSON in inference request: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("inference request must be a JSON object")
    return value


def _shape(entry: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = entry.get("shape")
    if isinstance(shape, list):
        shape = [integral(d) for d in shape]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise InvalidRequestError(f"input '{name}' needs 'shape': a list of integers")
    if any(d < 0 for d in shape):
        raise InvalidRequestError(f"input '{name}' has a negative dimension in shape {shape}")
    return tuple(shape)


def _decode_input(
    entry: dict[str, Any],
    name: str,
    meta: TensorMeta,
    model: str,
    binary: memoryview,
    offset: int,
    max_elements: int,
    literals: Callable[[], bool],
) -> tuple[np.ndarray, int]:
    """One input as an array, checked against its metadata.

    Numeric ``data`` is checked for JSON booleans, which numpy reads as numbers
    (``[true, 2.0]`` as ``[1.0, 2.0]``), from the cheapest test to the dearest: only an
    array holding a 0 or a 1 can have come from one, only then is ``literals()`` asked
    whether the header spells a ``true`` or ``false`` the rest of the request does not
    account for (:func:`_unaccounted_literals`), and only then are the values scanned in
    Python (~40 µs for 64 rows).
    """
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidRequestError(
            f"input '{name}' has unknown datatype {datatype!r}; expected one of {list(DATATYPES)}"
        )
    if datatype != meta.datatype and datatype not in meta.alternatives:
        expected = " or ".join(f"'{d}'" for d in (meta.datatype, *meta.alternatives))
        raise InvalidRequestError(
            f"inference input '{name}' data-type is '{datatype}', but model '{model}' expects "
            f"{expected}"
        )
    shape = _shape(entry, name)
    flat_column = meta.column and len(shape) == 1
    if not flat_column and (
        len(shape) != len(meta.shape)
        or any(want not in (-1, got) for want, got in zip(meta.shape, shape, strict=True))
    ):
        expected = ",".join(map(str, meta.shape))
        raise InvalidRequestError(
            f"unexpected shape for input '{name}' for model '{model}'. "
            f"Expected [{expected}], got [{','.join(map(str, shape))}]"
        )
    count = math.prod(shape)
    if count > max_elements:
        raise InvalidRequestError(
            f"input '{name}' has {count} elements (shape {list(shape)}), over the limit of "
            f"{max_elements}"
        )
    parameters = _parameters(entry, f"'parameters' of input '{name}'")
    size = integral(parameters.get("binary_data_size"))
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InvalidRequestError(
            f"binary_data_size of input '{name}' must be a non-negative integer"
        )
    if size is None and type(entry.get("data")) is not list:
        what = (
            "neither 'data' nor binary_data_size"
            if "data" not in entry
            else "'data' that is no array"
        )
        raise InvalidRequestError(f"input '{name}' has {what}")
    if size is not None and offset + size > len(binary):
        raise InvalidRequestError(
            f"input '{name}' claims {size} bytes of binary data but only "
            f"{len(binary) - offset} remain after the JSON header"
        )
    if datatype == "BYTES":
        return _decode_bytes(entry, name, shape, count, size, binary, offset)
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if size is not None:
        needed = count * dtype.itemsize
        if size != needed:
            raise InvalidRequestError(
                f"input '{name}' has binary_data_size {size} but shape {list(shape)} of "
                f"{datatype} needs {needed} bytes"
            )
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
        return array, offset + size
    try:
        array = np.asarray(entry["data"])
    except ValueError as exc:
        raise InvalidRequestError(f"'data' of input '{name}' is ragged: {exc}") from exc
    if meta.column and datatype.startswith("FP") and array.dtype.kind == "O":
        array = _with_missing(array, name)
    kinds = "b" if datatype == "BOOL" else "iuf" if datatype.startswith("FP") else "iu"
    mixed = (
        datatype != "BOOL"
        and array.dtype.kind in "iuf"
        and _holds_zero_or_one(entry["data"], array)
        and literals()
        and _holds_booleans(entry["data"])
    )
    if array.size and (array.dtype.kind not in kinds or mixed):
        wanted = "booleans" if datatype == "BOOL" else "numbers" if kinds == "iuf" else "integers"
        got = "booleans among them" if mixed else _WHAT_NUMPY_READ.get(array.dtype.kind)
        raise InvalidRequestError(
            f"'data' of input '{name}' must hold {datatype} {wanted}; got {got or 'objects'}"
        )
    if array.size != count:
        raise InvalidRequestError(
            f"input '{name}' has {array.size} values but shape {list(shape)} needs {count}"
        )
    if dtype.kind in "iu" and array.size:
        _check_integer_range(array, dtype, name, datatype)
    return array.astype(dtype, copy=False).reshape(shape), offset


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    """``holder["parameters"]``: an object, or empty when absent or null."""
    parameters = holder.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidRequestError(f"{what} must be an object")
    return parameters


def _check_integer_range(array: np.ndarray, dtype: np.dtype, name: str, datatype: str) -> None:
    """Refuse integers the cast to ``dtype`` would wrap around (300 as UINT8 is 44)."""
    limits = np.iinfo(dtype)
    low, high = int(array.min()), int(array.max())
    if low < limits.min or high > limits.max:
        value = low if low < limits.min else high
        raise InvalidRequestError(
            f"'data' of input '{name}' holds {value}, outside the range of {datatype} "
            f"({limits.min} to {limits.max})"
        )


def _unaccounted_literals(header: bytes, request: Any) -> bool:
    """Whether ``header`` may hold a ``true`` or ``false`` that ``request`` does not account
    for outside its ``data`` values: then a boolean may hide among numbers.

    ``true`` spells one ``u`` and ``false`` one ``s``; the header's bytes ``q``, ``s``,
    ``u`` and ``w`` (the four that equal ``0x77`` once bits ``0x06`` are set: one numpy
    pass, ~6 µs for 64 rows where ``bytes.count(b"true")`` takes ~45) are compared with
    those of the request's keys, strings and booleans outside ``data``. JSON numbers hold
    none of them; an escape, a ``null`` (it spells a ``u``) or a string in ``data`` only
    makes the answer a cautious yes.
    """
    spelled = int(np.count_nonzero((np.frombuffer(header, dtype=np.uint8) | 0x06) == 0x77))
    if not spelled:
        return False
    found, pending = 0, [request]
    while pending:
        value = pending.pop()
        if type(value) is bool:
            found += 1
        elif type(value) is str:
            found += sum(value.count(letter) for letter in "qsuw")
        elif type(value) is dict:
            for key, item in value.items():
                pending.append(key)
                if key != "data":
                    pending.append(item)
        elif type(value) is list:
            pending.extend(value)
    return spelled > found


#: What JSON ``data`` of the wrong kind held, by the kind of array numpy read it as.
_WHAT_NUMPY_READ = {
    "b": "booleans",
    "i": "numbers",
    "u": "numbers",
    "f": "numbers with a fraction or beyond 64 bits (JSON integers there read as floats)",
    "U": "strings",
    "O": "objects, nulls or mixed values",
}


#: Up to this many values the test for a 0 or a 1 runs on the Python list (``in``: ~1 µs for
#: 32 values, where numpy's four calls take ~4 µs), above it in numpy (~5 µs for 2,048).
_LIST_TEST_VALUES = 128


def _holds_zero_or_one(data: Any, array: np.ndarray) -> bool:
    """Whether the values of ``data`` (read by numpy as ``array``) include a 0 or a 1."""
    if array.size <= _LIST_TEST_VALUES and array.ndim <= 2:
        rows = data if array.ndim == 2 else [data]
        return any(type(row) is not list or 0 in row or 1 in row for row in rows)
    return bool(np.any((array == 0) | (array == 1)))


def _holds_booleans(data: Any) -> bool:
    """Whether JSON ``data`` (a number or nested lists of them) holds a boolean."""
    if type(data) is not list:
        return type(data) is bool
    kinds = set(map(type, data))  # one pass in C per list
    return bool in kinds or (list in kinds and any(map(_holds_booleans, data)))


def _with_missing(array: np.ndarray, name: str) -> np.ndarray:
    """JSON numbers with ``null`` for missing cells as floats with NaN."""
    cells = array.reshape(-1).tolist()
    if not all(
        c is None or (isinstance(c, int | float) and not isinstance(c, bool)) for c in cells
    ):
        raise InvalidRequestError(
            f"'data' of input '{name}' must hold numbers or null (a missing cell)"
        )
    return np.array([math.nan if c is None else c for c in cells], dtype=np.float64)


def _decode_bytes(
    entry: dict[str, Any],
    name: str,
    shape: tuple[int, ...],
    count: int,
    size: int | None,
    binary: memoryview,
    offset: int,
) -> tuple[np.ndarray, int]:
    """A BYTES input of ``count`` elements: JSON strings, or binary elements each prefixed
    by a 4-byte length (the caller checked that ``size`` bytes remain)."""
    if size is None:
        cells = np.asarray(entry["data"], dtype=object).reshape(-1).tolist()
        if not all(cell is None or isinstance(cell, str) for cell in cells):
            raise InvalidRequestError(f"'data' of input '{name}' must hold BYTES as strings")
        if len(cells) != count:
            raise InvalidRequestError(
                f"input '{name}' has {len(cells)} values but shape {list(shape)} needs {count}"
            )
        return np.array(cells, dtype=object).reshape(shape), offset
    data, position, cells = binary[offset : offset + size], 0, []
    for _ in range(count):  # never more elements than the shape says
        if position + 4 > size:
            raise InvalidRequestError(
                f"binary BYTES of input '{name}' end after {len(cells)} of {count} elements"
            )
        length = int.from_bytes(data[position : position + 4], "little")
        start, position = position + 4, position + 4 + length
        if position > size:
            raise InvalidRequestError(f"binary BYTES of input '{name}' end inside an element")
        try:
            cells.append(bytes(data[start:position]).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(f"input '{name}' holds bytes that are not UTF-8") from exc
    if position != size:
        raise InvalidRequestError(
            f"input '{name}' has {size - position} bytes after its {count} BYTES elements "
            "(check binary_data_size)"
        )
    return np.array(cells, dtype=object).reshape(shape), offset + size


def decode_infer_request(
    body: bytes,
    header_length: str | None,
    model: str,
    inputs: dict[str, TensorMeta],
    outputs: AbstractSet[str],
    max_elements: int,
) -> InferRequest:
    """Parse and validate an inference request body against a model's tensors.

    Parameters
    ----------
    body : bytes
        The (decompressed) body: JSON, optionally followed by binary tensor data.
    header_length : str or None
        The ``Inference-Header-Content-Length`` header.
    model : str
        Model name, for messages.
    inputs : dict of str to TensorMeta
        Every input the model takes.
    outputs : set-like of str
        Every output the model can return.
    max_elements : int
        Largest element count of one input.

    Raises
    ------
    InvalidRequestError
        Naming the first problem, in the wording of the reference server where one exists.
    """
    header, binary = _split_body(body, header_length)
    request = _load_json(header)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError("'id' must be a string")
    parameters = _parameters(request, "'parameters'")
    entries = request.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequestError(f"'inputs' must be a non-empty list for model '{model}'")
    decoded: dict[str, np.ndarray] = {}
    offset, view = 0, memoryview(binary)

    answer: list[bool] = []  # a memo by hand: functools.cache would cost ~2 µs a request

    def literals() -> bool:  # computed once, if an input is suspect at all
        if not answer:
            answer.append(_unaccounted_literals(header, request))
        return answer[0]

    # One errstate for every input: a number beyond float32 becomes inf in the cast,
    # silently (the runtime refuses it, naming the range).
    with np.errstate(over="ignore"):
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise InvalidRequestError("every input needs a 'name' string")
            name = entry["name"]
            if name not in inputs:
                raise InvalidRequestError(
                    f"unexpected inference input '{name}' for model '{model}'"
                )
            if name in decoded:
                raise InvalidRequestError(f"input '{name}' appears twice in the request")
            decoded[name], offset = _decode_input(
                entry, name, inputs[name], model, view, offset, max_elements, literals
            )
    if len(decoded) != len(inputs):
        missing = ", ".join(f"'{name}'" for name in inputs if name not in decoded)
        raise InvalidRequestError(
            f"expected {len(inputs)} inputs but got {len(decoded)} inputs for model '{model}': "
            f"missing {missing}"
        )
    if offset != len(binary):
        raise InvalidRequestError(
            f"{len(binary) - offset} bytes of binary data after the JSON header are not claimed "
            "by any input (check binary_data_size and Inference-Header-Content-Length)"
        )
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidRequestError("parameter 'binary_data_output' must be a boolean")
    return InferRequest(
        request_id,
        parameters,
        decoded,
        _requested_outputs(request, model, outputs, binary_output),
        binary_output,
    )


def _requested_outputs(
    request: dict[str, Any], model: str, known: AbstractSet[str], default_binary: bool
) -> list[RequestedOutput] | None:
    entries = request.get("outputs")
    if entries is None or entries == []:  # none named: every output, as Triton answers
        return None
    if not isinstance(entries, list):
        raise InvalidRequestError("'outputs' must be a list")
    requested: list[RequestedOutput] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidRequestError("every requested output needs a 'name' string")
        name = entry["name"]
        if name in seen:
            raise InvalidRequestError(f"duplicate output name '{name}' in the request")
        if name not in known:
            raise InvalidRequestError(
                f"unexpected inference output '{name}' for model '{model}'; "
                f"outputs: {sorted(known)}"
            )
        seen.add(name)
        parameters = _parameters(entry, f"'parameters' of output '{name}'")
        if "classification" in parameters:
            raise InvalidRequestError(
                f"output '{name}' asks for classification (class_count), which this server "
                f"does not support; take the top classes from '{name}' itself"
            )
        binary = parameters.get("binary_data", default_binary)
        if not isinstance(binary, bool):
            raise InvalidRequestError(f"'binary_data' of output '{name}' must be a boolean")
        requested.append(RequestedOutput(name, binary))
    return requested


def encode_infer_response(
    header: dict[str, Any],
    tensors: list[tuple[str, str, np.ndarray, bool]],
    accept_encoding: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Build a response body and its headers.

    Parameters
    ----------
    header : dict
        ``model_name``, ``model_version``, optional ``id`` and ``parameters``.
    tensors : list of (name, datatype, array, binary)
        Output tensors in order; binary ones are appended after the JSON as raw
        little-endian bytes.
    accept_encoding : str, optional
        The request's ``Accept-Encoding``; gzip or deflate is applied when it asks.

    Returns
    -------
    body : bytes
    headers : dict of str to str
        ``Content-Type``, and ``Inference-Header-Content-Length`` / ``Content-Encoding``
        when they apply.
    """
    outputs, blobs = [], []
    for name, datatype, array, binary in tensors:
        array = np.ascontiguousarray(array, dtype=NUMPY_TYPES[datatype])
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1)
        outputs.append(entry)
    text = orjson.dumps({**header, "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    if blobs:
        body = b"".join([text, *blobs])
        headers = {
            "Content-Type": "application/octet-stream",
            HEADER_LENGTH: str(len(text)),
        }
    else:
        body, headers = text, {"Content-Type": "application/json"}
    encoding = choose_encoding(accept_encoding)
    if encoding == "gzip":
        body = gzip_bytes(body)
    elif encoding == "deflate":
        body = zlib.compress(body, 1)
    if encoding:
        headers["Content-Encoding"] = encoding
    return body, headers


def choose_encoding(accept_encoding: str | None) -> str | None:
    """``"gzip"``, ``"deflate"`` or None, as the client's ``Accept-Encoding`` prefers.

    The coding of the highest ``q`` (RFC 9110, ``*`` standing for any coding not named),
    gzip on a tie; None when neither is acceptable or ``identity`` is preferred to both.
    """
    if not accept_encoding:
        return None
    offered = {}
    for part in accept_encoding.lower().split(","):
        token, _, quality = part.strip().partition(";")
        q = quality.strip().removeprefix("q=")
        try:
            offered[token.strip()] = float(q) if q else 1.0
        except ValueError:
            offered[token.strip()] = 0.0
    anything = offered.get("*", 0.0)
    quality = {coding: offered.get(coding, anything) for coding in ("gzip", "deflate")}
    best = max(quality, key=lambda coding: quality[coding])  # gzip first on a tie
    if quality[best] <= 0 or offered.get("identity", 0.0) > quality[best]:
        return None
    return best


def gzip_bytes(data: bytes) -> bytes:
    """Fast gzip (level 1): the answer is latency-bound, not bandwidth-bound."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()
