"""In-process serving graphs: today's fused graph against one batched-MatMul (packed) graph.

The fused graph (``ensembles.fused``) holds every member's own Gemm chain side by side; a
packed graph holds each layer once as a ``(K, in, out)`` MatMul over the members, as the
packed training engine does. Both take one ``(batch, n_features)`` input and return the
member outputs ``(K, batch, n_outputs)``. Members are the default network (64 -> 128 ->
64 -> 10, digits-shaped, random weights: speed does not depend on them); one onnxruntime
thread, the server's default. Prints microseconds per call, median of 5 timings.

    python scripts/bench_serving_graphs.py [--members 5 32] [--batches 1 64]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from ensembles.fused import fuse_members, session_options
from ensembles.markdown import format_table

N_FEATURES, HIDDEN, N_OUTPUTS = 64, (128, 64), 10


def member() -> nn.Sequential:
    """One member: the default hidden sizes, ReLU, softmax outputs."""
    layers: list[nn.Module] = []
    width = N_FEATURES
    for size in HIDDEN:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, N_OUTPUTS), nn.Softmax(dim=-1))


class PackedMembers(nn.Module):
    """The members' layers stacked: one ``matmul`` of ``(K, batch, in) @ (K, in, out)`` each."""

    def __init__(self, members: list[nn.Sequential]) -> None:
        super().__init__()
        linears = [[m for m in member if isinstance(m, nn.Linear)] for member in members]
        layers = list(zip(*linears, strict=True))  # layer by layer, every member's
        self.weights = [torch.stack([lin.weight.T for lin in layer]).detach() for layer in layers]
        self.biases = [torch.stack([lin.bias[None] for lin in layer]).detach() for layer in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Member outputs ``(K, batch, n_outputs)`` of rows ``(batch, n_features)``."""
        h = x.unsqueeze(0)
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.matmul(h, weight) + bias
            if index < len(self.weights) - 1:
                h = torch.relu(h)
        return torch.softmax(h, dim=-1)


def to_onnx(module: nn.Module, output: str, batch_axis: int) -> onnx.ModelProto:
    """``module`` exported with a dynamic batch axis."""
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.randn(2, N_FEATURES),),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=[output],
        dynamic_axes={"input": {0: "batch"}, output: {batch_axis: "batch"}},
    )
    return onnx.load_from_string(buffer.getvalue())


def microseconds(session: ort.InferenceSession, x: np.ndarray) -> float:
    """Median over 5 timings of one call."""
    calls = 2000 if len(x) == 1 else 300
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            session.run(None, {"input": x})
        timings.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[5, 32])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for n_members in args.members:
        members = [member() for _ in range(n_members)]
        fused = fuse_members([to_onnx(m, "probabilities", 0) for m in members])
        packed = to_onnx(PackedMembers(members), "member_outputs", 1)
        sessions = {
            name: ort.InferenceSession(graph.SerializeToString(), session_options(1))
            for name, graph in (("fused", fused), ("packed", packed))
        }
        for batch in args.batches:
            x = np.random.default_rng(0).normal(size=(batch, N_FEATURES)).astype(np.float32)
            outputs = {name: s.run(None, {"input": x})[0] for name, s in sessions.items()}
            np.testing.assert_allclose(outputs["packed"], outputs["fused"], atol=1e-5)
            fused_us, packed_us = (microseconds(sessions[n], x) for n in ("fused", "packed"))
            rows.append((n_members, batch, fused_us, packed_us, fused_us / packed_us))
    header = ["K", "batch", "fused µs", "packed µs", "packed speed-up"]
    print(format_table(header, rows))


if __name__ == "__main__":
    main()
