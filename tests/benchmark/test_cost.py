"""Inference cost: what is timed, per combiner, and the sizes on disk."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from ensembles.benchmark.cost import inference_cost, median_seconds
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions
from ensembles.store import ModelStore


def test_median_seconds_warms_up_once_then_times_each_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A scripted clock: the four timed calls take 1, 2, 5 and 10 s; the warm-up is untimed.
    ticks = iter([0.0, 1.0, 10.0, 12.0, 20.0, 25.0, 30.0, 40.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    calls = []
    seconds = median_seconds(lambda: calls.append(1), repeats=4)
    assert len(calls) == 5
    assert seconds == 3.5


@pytest.mark.parametrize("name", ["digits", "diabetes"])
def test_inference_cost_covers_every_combiner_and_one_member(
    trained_store: Path, name: str
) -> None:
    store = ModelStore(trained_store)
    manifest = store.load_manifest(name)
    folder = store.path(name, manifest.version)
    X = HeldoutPredictions.load(folder / HELDOUT_FILE).test.X
    cost = inference_cost(folder, manifest, X, repeats=2)
    assert set(cost) == {*manifest.combiners, "single_member"}
    member_kb = [(folder / m.file).stat().st_size / 1024 for m in manifest.members]
    assert cost["single_member"]["size_kb"] == pytest.approx(np.mean(member_kb))
    for combiner, info in manifest.combiners.items():
        assert math.isfinite(cost[combiner]["infer_us_per_row"])
        assert cost[combiner]["infer_us_per_row"] > 0
        if info.kind == "weight_average":
            averaged = (folder / info.state["file"]).stat().st_size / 1024
            assert cost[combiner]["size_kb"] == pytest.approx(averaged)
        else:
            assert cost[combiner]["size_kb"] == pytest.approx(sum(member_kb))
    if name == "digits":
        assert "weight_average" in cost
