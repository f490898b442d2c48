"""Synthetic ensembles of random ONNX MLPs, published to a store (serving and store tests)."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ensembles.combiners import MeanCombiner, VotingCombiner
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions
from ensembles.manifest import (
    CombinerInfo,
    InputSpec,
    Manifest,
    MemberInfo,
    OutputSpec,
    StrategyInfo,
)
from ensembles.reproduction import (
    TEST_OUTPUTS_FILE,
    WEIGHT_AVERAGE,
    combiner_test_outputs,
    save_test_outputs,
)
from ensembles.store import ModelStore

Task = Literal["classification", "regression"]
_OPSET = 17


def mlp_model(
    weights: list[tuple[np.ndarray, np.ndarray]], task: Task, variance_head: bool = False
) -> onnx.ModelProto:
    """Build an MLP graph with the member signature.

    Parameters
    ----------
    weights : list of (W, b)
        Layer weights, ``W`` of shape (n_in, n_out); ReLU between layers. With
        ``variance_head`` the last layer has ``2 * n_outputs`` columns: values, then the
        pre-softplus variances.
    task : {"classification", "regression"}
        Softmax on ``probabilities`` or identity on ``value``.

    Returns
    -------
    onnx.ModelProto
        Input ``input`` (batch, n_features) float32; output ``probabilities`` or ``value``
        (batch, n_outputs), plus ``variance`` with ``variance_head``.
    """
    nodes, inits = [], []
    current = "input"
    for index, (W, b) in enumerate(weights):
        inits += [
            numpy_helper.from_array(W.astype(np.float32), f"W{index}"),
            numpy_helper.from_array(b.astype(np.float32), f"b{index}"),
        ]
        nodes.append(helper.make_node("Gemm", [current, f"W{index}", f"b{index}"], [f"h{index}"]))
        current = f"h{index}"
        if index < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"r{index}"]))
            current = f"r{index}"
    n_features = weights[0][0].shape[0]
    n_last = weights[-1][0].shape[1]
    n_outputs = n_last // 2 if variance_head else n_last
    main = "probabilities" if task == "classification" else "value"
    outputs = [helper.make_tensor_value_info(main, TensorProto.FLOAT, ["batch", n_outputs])]
    if variance_head:
        inits.append(numpy_helper.from_array(np.array([n_outputs, n_outputs]), "split_sizes"))
        nodes.append(helper.make_node("Split", [current, "split_sizes"], ["mu", "raw"], axis=1))
        nodes.append(helper.make_node("Identity", ["mu"], [main]))
        nodes.append(helper.make_node("Softplus", ["raw"], ["variance"]))
        outputs.append(
            helper.make_tensor_value_info("variance", TensorProto.FLOAT, ["batch", n_outputs])
        )
    elif task == "classification":
        nodes.append(helper.make_node("Softmax", [current], [main], axis=1))
    else:
        nodes.append(helper.make_node("Identity", [current], [main]))
    graph = helper.make_graph(
        nodes,
        "member",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_features])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _random_weights(
    rng: np.random.Generator, sizes: list[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)), rng.normal(0, 0.1, n_out))
        for n_in, n_out in itertools.pairwise(sizes)
    ]


def _run(model: onnx.ModelProto, X: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X.astype(np.float32)})


def publish_synthetic(
    store: ModelStore,
    name: str,
    *,
    task: Task = "classification",
    n_members: int = 3,
    n_features: int = 4,
    n_outputs: int = 3,
    hidden: tuple[int, ...] = (8,),
    variance_head: bool = False,
    seed: int = 0,
    n_heldout: int = 64,
) -> Manifest:
    """Publish a new version of a random-MLP ensemble with fitted combiners.

    Members share the first layer's shape but have independent random weights; the
    ``weight_average`` combiner is the elementwise mean of their weights. Combiners:
    ``mean`` (default), ``vote`` (classification) and ``weight_average``.

    Returns
    -------
    Manifest
        The published manifest.
    """
    rng = np.random.default_rng(seed)
    sizes = [n_features, *hidden, 2 * n_outputs if variance_head else n_outputs]
    member_weights = [_random_weights(rng, sizes) for _ in range(n_members)]
    members = [mlp_model(w, task, variance_head) for w in member_weights]
    averaged_weights = [
        tuple(np.mean([w[layer][part] for w in member_weights], axis=0) for part in (0, 1))
        for layer in range(len(sizes) - 1)
    ]
    averaged = mlp_model(averaged_weights, task, variance_head)  # type: ignore[arg-type]

    def split(n: int) -> SplitPredictions:
        X = rng.normal(size=(n, n_features)).astype(np.float32)
        runs = [_run(model, X) for model in members]
        preds = np.stack([r[0] for r in runs]).astype(float)
        variances = np.stack([r[1] for r in runs]).astype(float) if variance_head else None
        y = preds.mean(axis=0).argmax(axis=1) if task == "classification" else preds.mean(axis=0)
        return SplitPredictions(X, y, preds, variances)

    validation, test = split(n_heldout), split(n_heldout)
    combiners = {"mean": MeanCombiner(task).fit(validation.member_preds, validation.y)}
    if task == "classification":
        combiners["vote"] = VotingCombiner().fit(validation.member_preds, validation.y)
    ids = [f"m{index:03d}" for index in range(n_members)]
    infos = {
        key: CombinerInfo(
            kind=combiner.kind,
            state=combiner.to_state(),
            fitted_on={"source": "validation", "n_rows": n_heldout},
            test_metrics={"score": 0.5},
        )
        for key, combiner in combiners.items()
    }
    infos[WEIGHT_AVERAGE] = CombinerInfo(
        kind=WEIGHT_AVERAGE,
        state={"file": "averaged.onnx", "members": ids},
        fitted_on={"source": "members"},
    )
    test_outputs = combiner_test_outputs(infos, test)
    test_outputs[WEIGHT_AVERAGE] = _run(averaged, test.X)[0]

    def write(folder: Path, version: int) -> Manifest:
        (folder / "members").mkdir()
        for member_id, model in zip(ids, members, strict=True):
            onnx.save(model, folder / "members" / f"{member_id}.onnx")
        onnx.save(averaged, folder / "averaged.onnx")
        HeldoutPredictions(validation, test).save(folder / HELDOUT_FILE)
        save_test_outputs(folder / TEST_OUTPUTS_FILE, test_outputs)
        return Manifest(
            name=name,
            version=version,
            created=dt.datetime.now(dt.UTC).isoformat(),
            task=task,
            classes=[f"c{k}" for k in range(n_outputs)] if task == "classification" else None,
            input=InputSpec(feature_names=[f"x{j}" for j in range(n_features)]),
            output=OutputSpec(
                name="probabilities" if task == "classification" else "value",
                n_outputs=n_outputs,
                variance_name="variance" if variance_head else None,
            ),
            strategy=StrategyInfo(name="synthetic", params={"seed": seed}),
            members=[
                MemberInfo(id=i, file=f"members/{i}.onnx", seed=seed, rows={"rule": "all"})
                for i in ids
            ],
            files={},
            combiners=infos,
            default_combiner="mean",
        )

    return store.publish(name, write)
