"""Tests of ensembles.fused: one fused graph gives what the separate member sessions give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ensembles.errors import ShapeError
from ensembles.fused import (
    MEMBER_OUTPUTS,
    MEMBER_VARIANCES,
    FusedMembers,
    fuse_members,
    session_options,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript:DeprecationWarning"
)

N_FEATURES = 6


class _Member(torch.nn.Module):
    """A small member like the trained ones: standardization, BatchNorm, Dropout, a head."""

    def __init__(self, n_outputs: int, task: str) -> None:
        super().__init__()
        self.task = task
        self.register_buffer("mean", torch.randn(N_FEATURES))
        self.register_buffer("scale", torch.rand(N_FEATURES) + 0.5)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(N_FEATURES, 16),
            torch.nn.BatchNorm1d(16),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(16, 16),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(16, n_outputs)
        self.log_var = torch.nn.Linear(16, n_outputs)
        with torch.no_grad():  # non-trivial BatchNorm statistics
            self.body[1].running_mean.normal_()
            self.body[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        hidden = self.body((x - self.mean) / self.scale)
        if self.task == "classification":
            return torch.softmax(self.head(hidden), dim=-1)
        return self.head(hidden), torch.exp(self.log_var(hidden))


def _export(path: Path, seed: int, task: str, n_outputs: int) -> Path:
    torch.manual_seed(seed)
    module = _Member(n_outputs, task).eval()
    names = ["probabilities"] if task == "classification" else ["value", "variance"]
    torch.onnx.export(
        module,
        torch.randn(3, N_FEATURES),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=names,
        dynamic_axes={name: {0: "batch"} for name in ["input", *names]},
    )
    return path


@pytest.fixture(scope="module")
def classification_members(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("classification")
    return [_export(folder / f"m{i:03d}.onnx", i, "classification", 4) for i in range(3)]


@pytest.fixture(scope="module")
def regression_members(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("regression")
    return [_export(folder / f"m{i:03d}.onnx", 10 + i, "regression", 2) for i in range(4)]


def _separate(paths: list[Path], X: np.ndarray) -> list[np.ndarray]:
    """Stack each output over members, one session per member (the reference)."""
    outputs = [ort.InferenceSession(str(path)).run(None, {"input": X}) for path in paths]
    return [np.stack([member[k] for member in outputs]) for k in range(len(outputs[0]))]


def _fused_session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("n_samples", [1, 7, 64])
def test_fused_classification_equals_separate_sessions(classification_members, n_samples):
    X = np.random.default_rng(n_samples).normal(size=(n_samples, N_FEATURES)).astype(np.float32)
    fused = fuse_members(classification_members)
    (member_outputs,) = _fused_session(fused).run([MEMBER_OUTPUTS], {"input": X})
    (expected,) = _separate(classification_members, X)
    assert member_outputs.shape == (3, n_samples, 4)
    np.testing.assert_allclose(member_outputs, expected, rtol=0, atol=1e-6)


def test_fused_regression_stacks_values_and_variances(regression_members):
    X = np.random.default_rng(0).normal(size=(9, N_FEATURES)).astype(np.float32)
    fused = fuse_members([onnx.load(path) for path in regression_members])
    assert [output.name for output in fused.graph.output] == [MEMBER_OUTPUTS, MEMBER_VARIANCES]
    values, variances = _fused_session(fused).run(None, {"input": X})
    expected_values, expected_variances = _separate(regression_members, X)
    assert values.shape == variances.shape == (4, 9, 2)
    np.testing.assert_allclose(values, expected_values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(variances, expected_variances, rtol=1e-6, atol=1e-6)


def test_fused_graph_declares_member_axis_and_prefixes_names(classification_members):
    fused = fuse_members(classification_members)
    dims = fused.graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 3
    assert dims[1].dim_param == "batch"
    assert dims[2].dim_value == 4
    assert [entry.name for entry in fused.graph.input] == ["input"]
    node_names = [node.name for node in fused.graph.node]
    assert len(node_names) == len(set(node_names))
    initializers = [init.name for init in fused.graph.initializer]
    assert len(initializers) == len(set(initializers))
    assert any(name.startswith("m002/") for name in initializers)


def test_fused_members_runner_returns_member_axis_first(classification_members, regression_members):
    X = np.random.default_rng(1).normal(size=(5, N_FEATURES))  # float64: converted
    runner = FusedMembers(classification_members, options=session_options(1, 1))
    outputs = runner(X)
    assert isinstance(outputs, np.ndarray)
    assert outputs.shape == (3, 5, 4)
    assert (runner.n_members, runner.n_features, runner.n_outputs) == (3, N_FEATURES, 4)
    assert not runner.has_variance
    values, variances = FusedMembers(regression_members)(X)
    assert values.shape == variances.shape == (4, 5, 2)


def test_members_that_disagree_are_refused(classification_members, regression_members):
    with pytest.raises(ShapeError, match=r"member 3 has .* but member 0 has"):
        fuse_members([*classification_members, regression_members[0]])
    with pytest.raises(ShapeError, match="at least one member"):
        fuse_members([])


def _renamed_input(path, new: str) -> onnx.ModelProto:
    model = onnx.load(path)
    old = model.graph.input[0].name
    model.graph.input[0].name = new
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
    return model


def test_a_member_of_two_inputs_is_refused(classification_members):
    model = onnx.load(classification_members[0])
    model.graph.input.append(onnx.helper.make_tensor_value_info("extra", 1, ["batch", 1]))
    with pytest.raises(
        ShapeError, match=r"member 0 must have exactly one input; got \['input', 'extra'\]"
    ):
        fuse_members([model])


def test_members_run_under_the_input_name_they_share(classification_members):
    """The manifest names the input; the fused graph takes whatever name the members share."""
    renamed = [_renamed_input(path, "features") for path in classification_members]
    n_features = FusedMembers(classification_members).n_features
    X = np.random.default_rng(0).normal(size=(3, n_features)).astype(np.float32)
    # The same weights in the same process: only the input's name differs.
    np.testing.assert_allclose(
        FusedMembers(renamed)(X), FusedMembers(classification_members)(X), rtol=1e-6
    )
    with pytest.raises(
        ShapeError, match=r"member 1 has .* = \('input'.* but member 0 has \('features'"
    ):
        fuse_members([renamed[0], classification_members[1]])


@pytest.mark.parametrize(
    ("intra", "inter", "mode", "expected_mode"),
    [
        (1, 1, "sequential", ort.ExecutionMode.ORT_SEQUENTIAL),
        (2, 2, "parallel", ort.ExecutionMode.ORT_PARALLEL),
    ],
)
def test_session_options_are_deliberate(intra, inter, mode, expected_mode):
    options = session_options(intra, inter, execution_mode=mode)
    assert options.intra_op_num_threads == intra
    assert options.inter_op_num_threads == inter
    assert options.execution_mode == expected_mode
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def _edited(path, edit) -> onnx.ModelProto:
    model = onnx.load(path)
    edit(model)
    return model


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m.opset_import.pop(),
            "member has no opset import for the default ONNX domain",
        ),
        (
            lambda m: m.graph.input[0].type.tensor_type.__setattr__("elem_type", 11),
            "member 0 input 'input' must be float32 of shape [batch, n_features]",
        ),
        (
            lambda m: m.graph.output[0].__setattr__("name", "scores"),
            "member 0 must have one output named 'probabilities' or 'value'; got ['scores']",
        ),
        (
            lambda m: m.graph.output[0].type.tensor_type.shape.dim.pop(),
            "member 0 output 'probabilities' must have shape [batch, n_outputs] with a fixed "
            "n_outputs",
        ),
    ],
    ids=["no opset", "input dtype", "output name", "output shape"],
)
def test_member_signatures_the_fuser_refuses(classification_members, edit, message):
    with pytest.raises(ShapeError) as caught:
        fuse_members([_edited(classification_members[0], edit)])
    assert str(caught.value) == message
