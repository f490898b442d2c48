"""Fuse ensemble members into one ONNX graph and run it with deliberate onnxruntime settings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, version_converter
from onnx.compose import add_prefix_graph

from ensembles.errors import ShapeError

MEMBER_OUTPUTS = "member_outputs"
MEMBER_VARIANCES = "member_variances"
#: The per-member tensors, returned only when asked for.
MEMBER_TENSORS = frozenset((MEMBER_OUTPUTS, MEMBER_VARIANCES))
_VALUE_OUTPUTS = ("probabilities", "value")
_VARIANCE_OUTPUT = "variance"

ExecutionMode = Literal["sequential", "parallel"]


def _load(member: str | os.PathLike[str] | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(member, onnx.ModelProto):
        return member
    return onnx.load(Path(member))


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise ShapeError("member has no opset import for the default ONNX domain")


def _signature(model: onnx.ModelProto, index: int) -> tuple[str, int, str, bool, int]:
    """``(input_name, n_features, value_output_name, has_variance, n_outputs)`` of one member."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [entry for entry in graph.input if entry.name not in initializers]
    if len(inputs) != 1:
        raise ShapeError(
            f"member {index} must have exactly one input; got {[entry.name for entry in inputs]}"
        )
    input_name = inputs[0].name
    tensor = inputs[0].type.tensor_type
    dims = tensor.shape.dim
    if tensor.elem_type != TensorProto.FLOAT or len(dims) != 2 or not dims[1].HasField("dim_value"):
        raise ShapeError(
            f"member {index} input '{input_name}' must be float32 of shape [batch, n_features]"
        )
    outputs = {entry.name: entry for entry in graph.output}
    value_names = [name for name in _VALUE_OUTPUTS if name in outputs]
    if len(value_names) != 1:
        raise ShapeError(
            f"member {index} must have one output named 'probabilities' or 'value'; "
            f"got {sorted(outputs)}"
        )
    out_dims = outputs[value_names[0]].type.tensor_type.shape.dim
    n_outputs = out_dims[1].dim_value if len(out_dims) == 2 else 0
    if n_outputs <= 0:
        raise ShapeError(
            f"member {index} output '{value_names[0]}' must have shape [batch, n_outputs] "
            "with a fixed n_outputs"
        )
    return input_name, dims[1].dim_value, value_names[0], _VARIANCE_OUTPUT in outputs, n_outputs


def fuse_members(
    members: Sequence[str | os.PathLike[str]] | Sequence[onnx.ModelProto],
) -> onnx.ModelProto:
    """Combine member graphs into one graph that stacks their outputs.

    Every member's nodes, edges and initializers are prefixed with ``mNNN/`` and read the
    one shared input; each member's output gets a leading axis (Unsqueeze) and the outputs
    are concatenated along it, so one onnxruntime call runs the whole ensemble.

    Parameters
    ----------
    members : sequence of path or onnx.ModelProto
        Member ONNX files or loaded models, in member order. Each takes one float32 input
        ``(batch, n_features)``, of one name for all, and returns ``probabilities`` or ``value``
        ``(batch, n_outputs)``, optionally with ``variance`` of the same shape.

    Returns
    -------
    onnx.ModelProto
        The members' input, float32 ``(batch, n_features)``; output ``member_outputs``
        ``(n_members, batch, n_outputs)``, plus ``member_variances`` of the same shape when
        the members have a ``variance`` output.

    Raises
    ------
    ShapeError
        When there are no members or their inputs or outputs disagree.
    """
    models = [_load(member) for member in members]
    if not models:
        raise ShapeError("fuse_members needs at least one member; got none")
    signatures = [_signature(model, index) for index, model in enumerate(models)]
    input_name, n_features, value_name, has_variance, n_outputs = signatures[0]
    for index, signature in enumerate(signatures[1:], start=1):
        if signature != signatures[0]:
            raise ShapeError(
                f"member {index} has (input, n_features, output, has_variance, n_outputs) = "
                f"{signature}, but member 0 has {signatures[0]}; all members must agree"
            )
    opset = max(_default_opset(model) for model in models)
    opset = max(opset, 13)  # Unsqueeze takes its axes as an input from opset 13 on
    models = [
        model if _default_opset(model) == opset else version_converter.convert_version(model, opset)
        for model in models
    ]

    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    value_infos: list[onnx.ValueInfoProto] = []
    stacked: dict[str, list[str]] = {value_name: [], _VARIANCE_OUTPUT: []}
    axes = helper.make_tensor("fused/axes0", TensorProto.INT64, [1], [0])
    initializers.append(axes)
    for index, model in enumerate(models):
        prefix = f"m{index:03d}/"
        graph = add_prefix_graph(model.graph, prefix, rename_inputs=False)
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        value_infos.extend(graph.value_info)
        for name in stacked:
            if name == _VARIANCE_OUTPUT and not has_variance:
                continue
            unsqueezed = f"{prefix}{name}/unsqueezed"
            nodes.append(
                helper.make_node(
                    "Unsqueeze", [prefix + name, axes.name], [unsqueezed], name=unsqueezed
                )
            )
            stacked[name].append(unsqueezed)

    batch_dim = "batch"
    outputs = [(MEMBER_OUTPUTS, stacked[value_name])]
    if has_variance:
        outputs.append((MEMBER_VARIANCES, stacked[_VARIANCE_OUTPUT]))
    graph_outputs = []
    for name, parts in outputs:
        nodes.append(helper.make_node("Concat", parts, [name], name=f"fused/{name}", axis=0))
        graph_outputs.append(
            helper.make_tensor_value_info(
                name, TensorProto.FLOAT, [len(models), batch_dim, n_outputs]
            )
        )
    graph_input = helper.make_tensor_value_info(
        input_name, TensorProto.FLOAT, [batch_dim, n_features]
    )
    graph = helper.make_graph(
        nodes,
        "fused_ensemble",
        [graph_input],
        graph_outputs,
        initializer=initializers,
        value_info=value_infos,
    )
    opsets = {entry.domain: entry.version for model in models for entry in model.opset_import}
    opsets[""] = opset
    opsets.pop("ai.onnx", None)
    fused = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets.items()],
        producer_name="ensembles.fused",
    )
    fused.ir_version = max(model.ir_version for model in models)
    onnx.checker.check_model(fused)
    return fused


def session_options(
    intra_threads: int = 1,
    inter_threads: int = 1,
    *,
    execution_mode: ExecutionMode = "sequential",
    spinning: bool = False,
) -> ort.SessionOptions:
    """Build onnxruntime session options chosen for small networks on few cores.

    Parameters
    ----------
    intra_threads : int, default 1
        Threads inside one operator. On a 2-core machine shared with HTTP workers, 1 is
        fastest per core (see docs/performance.md): more threads add synchronisation that
        a 256-wide layer cannot repay.
    inter_threads : int, default 1
        Threads across independent nodes; used only with ``execution_mode="parallel"``.
    execution_mode : {"sequential", "parallel"}, default "sequential"
        ``"parallel"`` runs independent member branches of a fused graph concurrently.
    spinning : bool, default False
        Let idle pool threads spin-wait. Off by default: spinning burns the cores the
        event loop and the other workers need.

    Returns
    -------
    onnxruntime.SessionOptions
        With full graph optimisation and the memory-pattern planner enabled.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(intra_threads)
    options.inter_op_num_threads = int(inter_threads)
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if execution_mode == "parallel"
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    options.enable_mem_pattern = True
    options.enable_cpu_mem_arena = True
    allow = "1" if spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", allow)
    options.add_session_config_entry("session.inter_op.allow_spinning", allow)
    options.log_severity_level = 3
    return options


class FusedMembers:
    """One onnxruntime session that runs every member of an ensemble in one call.

    Callable: ``members(X)`` runs the whole ensemble (the runtime calls it once per
    micro-batch, from the ``run_spans`` it gives :class:`serving.batching.MicroBatcher`).

    Parameters
    ----------
    members : sequence of path or onnx.ModelProto
        Member ONNX files or models, in member order (see :func:`fuse_members`).
    options : onnxruntime.SessionOptions, optional
        Defaults to ``session_options()`` (one intra-op thread, no spinning).

    Attributes
    ----------
    n_members : int
        Number of members.
    n_features : int
        Columns of the input.
    n_outputs : int
        Outputs per member (classes or targets).
    has_variance : bool
        Whether members report an aleatoric variance (``member_variances``).
    """

    def __init__(
        self,
        members: Sequence[str | os.PathLike[str]] | Sequence[onnx.ModelProto],
        *,
        options: ort.SessionOptions | None = None,
    ) -> None:
        model = fuse_members(members)
        output = model.graph.output[0].type.tensor_type.shape.dim
        self.n_members = output[0].dim_value
        self.n_outputs = output[2].dim_value
        self.n_features = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
        self._input_name = model.graph.input[0].name
        self.has_variance = len(model.graph.output) == 2
        self._output_names = [entry.name for entry in model.graph.output]
        self.session = ort.InferenceSession(
            model.SerializeToString(),
            sess_options=options or session_options(),
            providers=["CPUExecutionProvider"],
        )

    def __call__(self, X: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Run every member on ``X``.

        Parameters
        ----------
        X : np.ndarray, shape (n_samples, n_features)
            Rows; converted to contiguous float32 if needed.

        Returns
        -------
        np.ndarray or tuple of np.ndarray
            ``member_outputs`` of shape (n_members, n_samples, n_outputs), or the tuple
            ``(member_outputs, member_variances)`` when members report variance.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        results = self.session.run(self._output_names, {self._input_name: X})
        if self.has_variance:
            return results[0], results[1]
        return results[0]
