"""The common contract of every combiner, plus parameter and state errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ensembles.combiners import (
    COMBINER_KINDS,
    BlendingCombiner,
    MeanCombiner,
    StackingCombiner,
    VotingCombiner,
    build_combiner,
    combiner_from_state,
    split_rows,
)
from ensembles.combiners._calibration import apply_temperature
from ensembles.errors import ConfigError, DataError, NotFittedError, ShapeError
from ensembles.uncertainty import served_uncertainty

ROOT = Path(__file__).resolve().parents[2]


def fitted(case, toy):
    return case.make(toy.task).fit(toy.member_preds, toy.y, toy.X)


# -- the common suite ------------------------------------------------------------------


def test_fit_returns_self_and_output_shape(case, task, make_toy):
    toy = make_toy(task)
    combiner = case.make(task)
    assert combiner.fit(toy.member_preds, toy.y, toy.X) is combiner
    out = combiner.combine(toy.member_preds, toy.X)
    assert out.shape == toy.member_preds.shape[1:]
    if task == "classification":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
        assert out.min() >= 0


def test_combine_before_fit_raises(case, task, make_toy):
    toy = make_toy(task)
    combiner = case.make(task)
    name = type(combiner).__name__
    with pytest.raises(NotFittedError, match=rf"This {name} is not fitted yet\. Call fit"):
        combiner.combine(toy.member_preds, toy.X)


def test_identical_members(case, task, make_toy):
    toy = make_toy(task)
    member = toy.member_preds[1]
    same = np.repeat(member[None], 4, axis=0)
    combiner = case.make(task).fit(same, toy.y, toy.X)
    out = combiner.combine(same, toy.X)
    if task == "classification":
        spread = served_uncertainty(task, same, out)
        np.testing.assert_allclose(spread["mutual_information"], 0.0, atol=1e-15)
        if case.identical != "stack":
            assert np.all(spread["agreement"] == 1)
    else:
        spread = served_uncertainty(task, same, out)
    np.testing.assert_allclose(spread["variance"], 0.0, atol=1e-15)

    if case.identical == "member":
        np.testing.assert_allclose(out, member, rtol=1e-12, atol=1e-12)
    elif case.identical == "one_hot":
        np.testing.assert_array_equal(out, np.eye(member.shape[1])[member.argmax(axis=1)])
    elif case.identical == "temperature":
        expected = apply_temperature(member, combiner.temperature_)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    else:
        # A regularized meta-learner cannot reproduce the member exactly. What is true:
        # it cannot tell copies apart, so every copy gets the same coefficient block, and
        # (without passthrough) k copies under penalty P equal one copy under penalty P/k.
        n_outputs = member.shape[1]
        coef = combiner.coef_
        blocks = [coef[:, m * n_outputs : (m + 1) * n_outputs] for m in range(4)]
        for block in blocks[1:]:
            np.testing.assert_allclose(block, blocks[0], atol=1e-6)
        if not combiner.passthrough and not combiner.calibrate:
            single = StackingCombiner(task, C=4.0, alpha=0.25).fit(member[None], toy.y)
            np.testing.assert_allclose(out, single.combine(member[None]), atol=1e-5)


def test_unweighted_combiners_ignore_member_order(case, task, make_toy):
    if not case.order_invariant:
        pytest.skip("learns per-member state; see test_blend_weights_follow_member_order")
    toy = make_toy(task)
    order = [2, 0, 3, 1]
    out = case.make(task).fit(toy.member_preds, toy.y).combine(toy.member_preds)
    permuted = toy.member_preds[order]
    out_permuted = case.make(task).fit(permuted, toy.y).combine(permuted)
    # Summation order changes the last bits, and the temperature search amplifies them.
    np.testing.assert_allclose(out_permuted, out, atol=1e-7)


def test_json_state_round_trip(case, task, make_toy):
    toy = make_toy(task)
    combiner = fitted(case, toy)
    state = json.loads(json.dumps(combiner.to_state()))
    assert state["kind"] in COMBINER_KINDS
    rebuilt = combiner_from_state(state)
    assert type(rebuilt) is type(combiner)
    assert rebuilt.to_state() == state
    fresh = make_toy(task, seed=1)
    # Same numbers, but in arrays of their own: OpenBLAS picks kernels by alignment and CPU
    # (SkylakeX, Haswell, ...), which moves the last bits (5.6e-16 seen), never more.
    np.testing.assert_allclose(
        rebuilt.combine(fresh.member_preds, fresh.X),
        combiner.combine(fresh.member_preds, fresh.X),
        rtol=1e-12,
        atol=1e-14,
    )


def test_unfitted_state_round_trip(case, task):
    state = json.loads(json.dumps(case.make(task).to_state()))
    assert state["fitted"] is None
    rebuilt = combiner_from_state(state)
    assert not rebuilt.is_fitted()
    assert rebuilt.get_params() == state["params"]


def test_member_count_mismatch_names_both_counts(case, task, make_toy):
    toy = make_toy(task)
    combiner = fitted(case, toy)
    name = type(combiner).__name__
    with pytest.raises(ShapeError, match=f"{name} was fitted on 4 members but got 3"):
        combiner.combine(toy.member_preds[:3], toy.X)


def test_output_count_mismatch(case, task, make_toy):
    toy = make_toy(task)
    combiner = fitted(case, toy)
    other = make_toy(task, **{"n_classes" if task == "classification" else "n_outputs": 4})
    with pytest.raises(ShapeError, match=r"was fitted on .* outputs per member but got 4"):
        combiner.combine(other.member_preds, toy.X)


# -- behaviour of single combiners -----------------------------------------------------


def test_blend_weights_follow_member_order(make_toy):
    toy = make_toy("regression")
    order = [2, 0, 3, 1]
    weights = BlendingCombiner("regression").fit(toy.member_preds, toy.y).member_weights
    permuted = BlendingCombiner("regression").fit(toy.member_preds[order], toy.y).member_weights
    np.testing.assert_allclose(permuted, weights[order], atol=1e-6)


def test_blend_falls_back_to_uniform_on_uninformative_members():
    rng = np.random.default_rng(3)
    member_preds = rng.normal(size=(4, 60, 1))
    y = rng.normal(size=60)
    combiner = BlendingCombiner("regression").fit(member_preds, y)
    losses = combiner.heldout_losses_
    assert combiner.fallback_ is True
    assert not losses["learned"] < losses["uniform"]
    np.testing.assert_array_equal(combiner.member_weights, np.full(4, 0.25))
    assert combiner.to_state()["fitted"]["fallback"] is True


def test_blend_keeps_learned_weights_when_they_win(make_toy):
    combiner = BlendingCombiner("regression").fit(*_preds_and_y(make_toy("regression")))
    assert combiner.fallback_ is False
    assert combiner.heldout_losses_["learned"] < combiner.heldout_losses_["uniform"]
    assert combiner.member_weights.min() >= 0
    assert combiner.member_weights.sum() == pytest.approx(1.0)


def _preds_and_y(toy):
    return toy.member_preds, toy.y


def test_blend_member_weights_before_fit_raise():
    with pytest.raises(NotFittedError, match="BlendingCombiner is not fitted yet"):
        BlendingCombiner("classification").member_weights  # noqa: B018


def test_blend_needs_enough_rows(make_toy):
    toy = make_toy("regression", n_samples=3)
    with pytest.raises(DataError, match=r"at least 4 fit rows .* got 3"):
        BlendingCombiner("regression").fit(toy.member_preds, toy.y)


def test_weighted_vote_counts_weights(make_toy):
    # Members 0 and 1 vote class 0, member 2 votes class 1 with weight 3.
    member_preds = np.array([[[0.9, 0.1]], [[0.8, 0.2]], [[0.4, 0.6]]])
    combiner = VotingCombiner(weights=[1, 1, 3]).fit(member_preds, np.array([0]))
    np.testing.assert_allclose(combiner.combine(member_preds), [[0.4, 0.6]])
    np.testing.assert_allclose(combiner.member_weights, [0.2, 0.2, 0.6])


def test_vote_weight_count_mismatch(make_toy):
    toy = make_toy("classification")
    with pytest.raises(ConfigError, match="VotingCombiner has 2 weights for 4 members"):
        VotingCombiner(weights=[1, 2]).fit(toy.member_preds, toy.y)


def test_stacking_passthrough_needs_x(make_toy):
    toy = make_toy("classification")
    combiner = StackingCombiner("classification", passthrough=True)
    with pytest.raises(ShapeError, match=r"passthrough=True and needs the raw features X .*X=None"):
        combiner.fit(toy.member_preds, toy.y)
    combiner.fit(toy.member_preds, toy.y, toy.X)
    with pytest.raises(ShapeError, match=r"needs the raw features X of shape \(160, 5\)"):
        combiner.combine(toy.member_preds)
    with pytest.raises(ShapeError, match=r"needs X of shape \(160, 5\); got shape \(160, 4\)"):
        combiner.combine(toy.member_preds, toy.X[:, :4])


def test_stacking_needs_every_class(make_toy):
    toy = make_toy("classification")
    y = np.where(toy.y == 2, 1, toy.y)
    with pytest.raises(DataError, match=r"classes \[2\] are missing from the 160 fit rows"):
        StackingCombiner("classification").fit(toy.member_preds, y)


def test_temperature_is_one_number_in_state(make_toy):
    toy = make_toy("classification")
    combiner = MeanCombiner("classification", calibrate=True).fit(toy.member_preds, toy.y)
    temperature = combiner.to_state()["fitted"]["temperature"]
    assert isinstance(temperature, float)
    assert temperature != 1.0
    uncalibrated = MeanCombiner("classification").fit(toy.member_preds, toy.y)
    assert uncalibrated.to_state()["fitted"]["temperature"] is None


# -- input and parameter errors --------------------------------------------------------


def test_vote_rejects_regression():
    with pytest.raises(ConfigError, match="VotingCombiner needs task='classification'"):
        VotingCombiner(task="regression")


def test_parameter_problems_are_collected():
    with pytest.raises(ConfigError) as info:
        BlendingCombiner("ranking", method="best", n_rounds=0)
    lines = str(info.value).splitlines()
    assert lines == [
        "The 'task' parameter of BlendingCombiner must be one of 'classification', "
        "'regression'. Got 'ranking' instead.",
        "The 'method' parameter of BlendingCombiner must be one of 'optimize', 'greedy'. "
        "Got 'best' instead.",
        "The 'n_rounds' parameter of BlendingCombiner must be an int >= 1. Got 0 instead.",
    ]


def test_calibrate_needs_classification():
    with pytest.raises(ConfigError, match="cannot calibrate a regression combiner"):
        MeanCombiner("regression", calibrate=True)


def test_stacking_rejects_bad_regularization():
    with pytest.raises(ConfigError, match="The 'C' parameter of StackingCombiner must be a float"):
        StackingCombiner("classification", C=0)


def test_member_preds_must_be_3d():
    with pytest.raises(ShapeError, match=r"shape \(n_members, n_samples, n_outputs\).*\(5, 3\)"):
        MeanCombiner("regression").fit(np.zeros((5, 3)), np.zeros(3))


def test_classification_needs_probabilities():
    with pytest.raises(DataError, match="needs class probabilities"):
        MeanCombiner("classification").fit(np.full((2, 3, 2), 0.7), np.array([0, 1, 0]))


def test_class_indices_in_range(make_toy):
    toy = make_toy("classification")
    with pytest.raises(DataError, match=r"class indices in 0\.\.2 .* got values in 1\.\.3"):
        MeanCombiner("classification").fit(toy.member_preds, np.where(toy.y == 0, 3, toy.y))


def test_regression_target_shape(make_toy):
    toy = make_toy("regression")
    with pytest.raises(ShapeError, match=r"needs y of shape \(160, 2\)"):
        MeanCombiner("regression").fit(toy.member_preds, toy.y[:, 0])


def test_unknown_kind_suggests_close_match():
    with pytest.raises(ConfigError, match=r"Unknown combiner kind 'blnd'.*Did you mean 'blend'"):
        build_combiner("blnd", "regression")
    with pytest.raises(ConfigError, match="Unknown combiner kind 'nope'"):
        combiner_from_state({"kind": "nope"})


def test_build_combiner_passes_params():
    combiner = build_combiner("blend", "classification", method="greedy", n_rounds=7)
    assert isinstance(combiner, BlendingCombiner)
    assert (combiner.task, combiner.method, combiner.n_rounds) == ("classification", "greedy", 7)
    with pytest.raises(ConfigError, match=r"Bad parameters \['weight'\] for MeanCombiner"):
        build_combiner("mean", "regression", weight=1)


def test_state_errors():
    state = MeanCombiner("regression").to_state()
    with pytest.raises(ConfigError, match="needs a state of kind 'stack'; got 'mean'"):
        StackingCombiner.from_state(state)
    with pytest.raises(ConfigError, match=r"unknown parameters \['weights'\]"):
        MeanCombiner.from_state({**state, "params": {"task": "regression", "weights": None}})
    with pytest.raises(ConfigError, match=r"missing the keys \['fitted'\]"):
        MeanCombiner.from_state({"kind": "mean", "params": {"task": "regression"}})
    broken = {**state, "fitted": {"n_members": 2, "n_outputs": 1}}
    with pytest.raises(ConfigError, match="missing the key 'temperature'"):
        MeanCombiner.from_state(broken)


# -- the torch-free core ---------------------------------------------------------------

_PLAIN_NUMPY_SCRIPT = """
import json, sys
import numpy as np
from ensembles.combiners import combiner_from_state
import ensembles.metrics, ensembles.uncertainty

cases = json.load(open(sys.argv[1]))
arrays = np.load(sys.argv[2])
for index, state in enumerate(cases):
    combiner = combiner_from_state(state)
    out = combiner.combine(arrays[f"preds{index}"], arrays[f"X{index}"])
    # Another process and other arrays: BLAS kernels may round the last bits differently.
    expected = arrays[f"out{index}"]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14, err_msg=state["kind"])
loaded = sorted(name for name in ("sklearn", "scipy", "torch") if name in sys.modules)
assert not loaded, loaded
print("ok", len(cases))
"""


def test_plain_numpy_process_rebuilds_every_combiner(combiner_cases, make_toy, tmp_path):
    states, arrays = [], {}
    for case in combiner_cases:
        for task in case.tasks:
            toy = make_toy(task)
            combiner = case.make(task).fit(toy.member_preds, toy.y, toy.X)
            fresh = make_toy(task, seed=2)
            index = len(states)
            states.append(combiner.to_state())
            arrays[f"preds{index}"] = fresh.member_preds
            arrays[f"X{index}"] = fresh.X
            arrays[f"out{index}"] = combiner.combine(fresh.member_preds, fresh.X)
    (tmp_path / "states.json").write_text(json.dumps(states))
    np.savez(tmp_path / "arrays.npz", **arrays)
    result = subprocess.run(
        [sys.executable, "-c", _PLAIN_NUMPY_SCRIPT, "states.json", "arrays.npz"],
        cwd=tmp_path,
        # Same environment (BLAS kernel choice included), fresh interpreter.
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", str(len(states))]


def test_failed_fit_leaves_combiner_unfitted(make_toy):
    toy = make_toy("classification")
    combiner = VotingCombiner(weights=[1, 2])
    with pytest.raises(ConfigError):
        combiner.fit(toy.member_preds, toy.y)
    assert not combiner.is_fitted()


@pytest.mark.parametrize("counts", [[3] * 20, [1] * 10, [12, 388], [5, 2, 9, 1]])
def test_stratified_halves_differ_by_one_row_and_hold_every_class_of_two(
    counts: list[int],
) -> None:
    """The blend's weight check and the cross-fitting that chooses the default split the
    fit rows so: per class alternately, going on from class to class (twenty classes of
    three rows gave halves of 40 and 20; ten classes of one row an empty half)."""
    y = np.repeat(np.arange(len(counts)), counts)
    first, second = split_rows(y, "classification", seed=0)
    assert sorted([*first, *second]) == list(range(len(y)))
    assert abs(len(first) - len(second)) <= 1
    for label, count in enumerate(counts):
        if count >= 2:
            assert label in y[first] and label in y[second]
    again = split_rows(y, "classification", seed=0)
    assert [a.tolist() for a in again] == [first.tolist(), second.tolist()]
