"""ONNX export of member networks, checked against torch with onnxruntime."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ensembles.errors import ExportError
from ensembles.manifest import OutputSpec
from ensembles.training.network import ExportedMember, MemberNetwork

OPSET = 17
PARITY_TOLERANCE = 1e-5


def output_spec(network: MemberNetwork) -> OutputSpec:
    """The output names and width every member of this kind exports."""
    if network.task == "classification":
        return OutputSpec(name="probabilities", n_outputs=network.n_outputs)
    return OutputSpec(
        name="value",
        n_outputs=network.n_outputs,
        variance_name="variance" if network.gaussian else None,
    )


def export_member(network: MemberNetwork, path: Path, X_check: np.ndarray) -> float:
    """Export ``network`` to ONNX at ``path`` and check it against torch.

    Parameters
    ----------
    network : MemberNetwork
    path : Path
        Destination ``.onnx`` file.
    X_check : ndarray (n_samples, n_features)
        Held-out rows run through both torch and onnxruntime.

    Returns
    -------
    float
        The largest difference between the two (see :func:`check_parity`).

    Raises
    ------
    ExportError
        When the export fails or the outputs differ by more than 1e-5.
    """
    spec = output_spec(network)
    names = [spec.name] + ([spec.variance_name] if spec.variance_name else [])
    network.eval()
    module = ExportedMember(network).eval()
    example = torch.as_tensor(X_check[:2], dtype=torch.float32)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=names,
                dynamic_axes={name: {0: "batch"} for name in ["input", *names]},
            )
        model = onnx.load_from_string(buffer.getvalue())
        onnx.checker.check_model(model)
    except Exception as exc:  # the exporter raises many unrelated types
        raise ExportError(f"exporting {path.name} to ONNX failed: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return check_parity(path, network, X_check)


def check_parity(path: Path, network: MemberNetwork, X: np.ndarray) -> float:
    """Largest absolute difference between onnxruntime on ``path`` and torch on ``X``.

    Measured in the network's own units: probabilities as they are, regression values and
    variances divided by the target's scale (and its square). In the target's units float32
    alone cannot resolve 1e-5 on a value of 150, nor on a variance of 5,000.

    Raises
    ------
    ExportError
        When it exceeds 1e-5.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    X32 = np.asarray(X, dtype=np.float32)
    onnx_outputs = session.run(None, {"input": X32})
    with torch.no_grad():
        torch_outputs = [output.numpy() for output in network.predict(torch.from_numpy(X32))]
    scale = network.target_scale.numpy() if network.task == "regression" else 1.0
    units = [scale, scale**2][: len(torch_outputs)]
    difference = max(
        float(np.max(np.abs(a.astype(np.float64) - b) / unit))
        for a, b, unit in zip(onnx_outputs, torch_outputs, units, strict=True)
    )
    if not difference <= PARITY_TOLERANCE:
        raise ExportError(
            f"{path.name}: onnxruntime and torch outputs differ by {difference:.2e} on held-out "
            f"rows (allowed {PARITY_TOLERANCE:.0e}); the exported graph is not trustworthy"
        )
    return difference
