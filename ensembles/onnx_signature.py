"""ONNX signatures: the tensors a version promises, checked against its manifest before use."""

from __future__ import annotations

import logging

import onnx
from onnx import TensorProto

from ensembles.errors import IntegrityError
from ensembles.manifest import Manifest

logger = logging.getLogger(__name__)


def check_signature(model: onnx.ModelProto, manifest: Manifest, source: str) -> None:
    """Verify that an ONNX graph has the input and outputs the manifest promises.

    Parameters
    ----------
    model : onnx.ModelProto
    manifest : Manifest
    source : str
        How to name the file in messages (relative to the store root).

    Raises
    ------
    IntegrityError
        Naming ``source`` and the first mismatch.
    """
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [entry for entry in graph.input if entry.name not in initializers]
    spec = manifest.input
    if [entry.name for entry in inputs] != [spec.name]:
        raise IntegrityError(
            f"{source}: expected one input '{spec.name}', found {[e.name for e in inputs]}"
        )
    wanted = {manifest.output.name: manifest.output.n_outputs}
    if manifest.output.variance_name:
        wanted[manifest.output.variance_name] = manifest.output.n_outputs
    tensors = [(inputs[0], spec.n_features)] + [
        (entry, wanted[entry.name]) for entry in graph.output if entry.name in wanted
    ]
    missing = sorted(set(wanted) - {entry.name for entry in graph.output})
    if missing:
        raise IntegrityError(f"{source}: outputs {missing} promised by the manifest are missing")
    for entry, width in tensors:
        tensor = entry.type.tensor_type
        dims = tensor.shape.dim
        if tensor.elem_type != TensorProto.FLOAT or len(dims) != 2 or dims[1].dim_value != width:
            got = [d.dim_value or d.dim_param or "?" for d in dims]
            raise IntegrityError(
                f"{source}: '{entry.name}' must be float32 of shape [batch, {width}] as the "
                f"manifest says; got elem_type {tensor.elem_type} and shape {got}"
            )


def load_onnx(data: bytes, manifest: Manifest, source: str) -> onnx.ModelProto:
    """Parse one ONNX file's (verified) bytes and check its signature against the manifest.

    Parameters
    ----------
    data : bytes
        The file's bytes, as the store verified them.
    manifest : Manifest
        The version's manifest.
    source : str
        How to name the file in messages (relative to the store root, never absolute).

    Raises
    ------
    IntegrityError
        When the file does not parse or its signature differs from the manifest's.
    """
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise IntegrityError(f"{source} is not a readable ONNX model: {exc}") from exc
    check_signature(model, manifest, source)
    logger.debug("signature of %s verified", source)
    return model
