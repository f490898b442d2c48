"""The Ray engine: the loop's members as Ray tasks, a failed member named, Ray optional.

The tests that need no cluster come first: pytest runs a module in order, so the session's
cluster (``ray_cluster``) starts once, after the test of the engine's own cluster.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ensembles.data import load_builtin, split_dataset
from ensembles.errors import ConfigError, EnsembleError
from ensembles.heldout import HeldoutPredictions
from ensembles.store import ModelStore
from ensembles.training import ray_engine
from ensembles.training.config import TrainConfig
from ensembles.training.members import TrainingData
from ensembles.training.pipeline import train_ensemble
from ensembles.training.plans import MemberPlan
from ensembles.training.ray_engine import train_on_ray
from ensembles.training.strategies import StrategyOptions, make_plans, train_members
from serving.runtime import EnsembleRuntime
from tests.conftest import tiny_request

#: Trains every member into NaN at its first epoch (as in test_pipeline's divergence test).
DIVERGING = {"optimizer": "sgd", "learning_rate": 1e8, "gaussian_head": False}
#: Early stopping, so that members stop at different epochs; dropout, so that the seeded
#: masks must match too.
EARLY_STOPPED = TrainConfig(
    hidden_sizes=(16,), epochs=40, patience=3, learning_rate=3e-3, dropout=0.1, batch_size=64
)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def digits() -> TrainingData:
    """Digits' training and validation rows (1,237 and 200, 64 features, 10 classes)."""
    return TrainingData.from_splits(split_dataset(load_builtin("digits"), 0))


def test_without_ray_the_engine_says_how_to_install_it(
    digits: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError) as error:
        train_members("bagging", 2, digits, EARLY_STOPPED, 0, progress=False, engine="ray")
    assert str(error.value) == (
        "--engine ray needs Ray, which is not installed: pip install 'ray>=2.40' (or pip "
        "install -e '.[ray]' in the checkout), or choose --engine loop"
    )


def test_training_imports_without_ray() -> None:
    code = (
        "import sys; sys.modules['ray'] = None; "  # as if the extra were not installed
        "import ensembles.cli.train, ensembles.training.pipeline, ensembles.training.ray_engine"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


#: Ray's own settings (read when a process first initialises Ray) that make a connection
#: to an address where nothing listens give up in seconds instead of about 40.
QUICK_CONNECT = {
    "RAY_gcs_server_port_wait_time_s": "1",  # connection attempts: 1 (default 20)
    "RAY_gcs_rpc_server_connect_timeout_s": "1",  # default 5 s
    "RAY_py_gcs_connect_timeout_s": "1",  # waiting for the cluster's id: default 30 s
}

_CONNECT_TO = """
import sys
from ensembles.data import load_builtin, split_dataset
from ensembles.errors import ConfigError
from ensembles.training.config import TrainConfig
from ensembles.training.members import TrainingData
from ensembles.training.plans import MemberPlan
from ensembles.training.ray_engine import train_on_ray

data = TrainingData.from_splits(split_dataset(load_builtin("wine"), 0))
try:
    train_on_ray([MemberPlan(0, 0)], data, TrainConfig(), sys.argv[1], lambda: None)
except ConfigError as error:
    print(error)
else:
    sys.exit("trained on a cluster that should not be there")
"""


def test_a_cluster_that_cannot_be_reached_is_a_config_error(ray_module: ModuleType) -> None:
    # A real connection to a free port on loopback, where nothing listens. In a fresh
    # process: Ray reads some of QUICK_CONNECT only when a process first initialises it
    # (this one may have run a cluster already), and the session's cluster keeps Ray's
    # default timeouts.
    port = free_port()
    env = {**os.environ, **QUICK_CONNECT}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-c", _CONNECT_TO, f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # a hang guard
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # Ray names the address it tried: this machine's IP for 127.0.0.1, on the same port.
    assert re.fullmatch(
        rf"cannot connect to the Ray cluster at '127\.0\.0\.1:{port}': Failed to connect to "
        rf"Ray cluster at \S+:{port}; check --ray-address, or omit it to train on a local "
        r"cluster\n",
        result.stdout,
    ), result.stdout


def test_the_engines_own_cluster_names_the_failed_member_and_is_shut_down(
    no_ray: ModuleType, digits: TrainingData
) -> None:
    config = EARLY_STOPPED.with_overrides(DIVERGING)
    with pytest.raises(ConfigError) as error:
        train_members("bagging", 2, digits, config, 0, progress=False, engine="ray")
    # Either member may finish first; the message is the loop's, on one line.
    assert error.match(r"^m00[01] diverged at epoch 1 \(training loss nan\); lower --learning")
    assert "\n" not in str(error.value)
    assert not no_ray.is_initialized()


def test_ray_trains_the_members_the_loop_trains(
    ray_cluster: ModuleType, digits: TrainingData
) -> None:
    loop, loop_params = train_members(
        "bagging", 3, digits, EARLY_STOPPED, 7, progress=False, engine="loop"
    )
    ray, ray_params = train_members(
        "bagging", 3, digits, EARLY_STOPPED, 7, progress=False, engine="ray"
    )
    assert ray_params["engine"]["used"] == "ray"
    assert {**ray_params, "engine": None} == {**loop_params, "engine": None}
    assert [member.plan for member in ray] == [member.plan for member in loop]
    assert len({member.epoch for member in loop}) > 1  # early stopping did differ
    for first, second in zip(loop, ray, strict=True):
        assert second.epoch == first.epoch
        assert second.budget == first.budget
        # The same kernels on one torch thread, in another process on this machine: equal
        # bits are expected, but nothing promises that another process takes the same CPU
        # code path (vector width, library dispatch). 1e-6 is far below anything training
        # does (one Adam step at 3e-3 moves a weight by about 3e-3).
        for key, value in first.state.items():
            np.testing.assert_allclose(second.state[key], value, rtol=0, atol=1e-6)
            assert second.state[key].flags.writeable
        for epoch_loop, epoch_ray in zip(first.curves, second.curves, strict=True):
            assert epoch_ray == pytest.approx(epoch_loop, rel=1e-5, abs=1e-6)
    assert ray_cluster.is_initialized()  # a cluster the engine did not start keeps running


def test_progress_advances_once_per_member(ray_cluster: ModuleType, digits: TrainingData) -> None:
    finished: list[int] = []
    plans = make_plans("repeat", 3, 0, StrategyOptions())
    config = EARLY_STOPPED.with_overrides({"epochs": 1, "patience": None})
    members = train_on_ray(plans, digits, config, None, lambda: finished.append(len(finished)))
    assert finished == [0, 1, 2]
    assert [member.plan.member_id for member in members] == ["m000", "m001", "m002"]


@pytest.mark.parametrize("refit", ["off", "on"])
def test_the_pipeline_publishes_what_the_loop_publishes(
    ray_cluster: ModuleType, tmp_path: Path, refit: str
) -> None:
    """Also when the members are refit on training + validation rows: the second pass
    runs on the same engine."""
    runtimes = {}
    for engine in ("loop", "ray"):
        request = tiny_request(
            tmp_path / engine, dataset="wine", strategy="bagging", engine=engine, refit=refit
        )
        manifest = train_ensemble(request)
        assert manifest.strategy.params["engine"]["used"] == engine
        record = manifest.strategy.params["refit"]
        assert record["used"] is (refit == "on")
        assert record.get("engine", {"used": engine})["used"] == engine
        runtimes[engine] = (manifest, EnsembleRuntime.load(ModelStore(request.store), "wine", 1))
    (loop, loop_runtime), (ray, ray_runtime) = runtimes["loop"], runtimes["ray"]
    for name, combiner in loop.combiners.items():
        assert ray.combiners[name].test_metrics == pytest.approx(combiner.test_metrics, rel=1e-5)
    folder = ModelStore(tmp_path / "ray" / "store").path("wine", 1)
    X = HeldoutPredictions.load(folder / "heldout.npz").test.X
    np.testing.assert_allclose(
        ray_runtime.predict(X).combined, loop_runtime.predict(X).combined, rtol=0, atol=1e-5
    )


def test_the_first_failed_member_cancels_the_others(
    ray_cluster: ModuleType, digits: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = []
    cancel = ray_cluster.cancel
    monkeypatch.setattr(
        ray_cluster,
        "cancel",
        lambda ref, **options: cancelled.append(ref) or cancel(ref, **options),
    )
    # m000 diverges at once; m001 (running) and m002 (queued: 2 CPUs) would train for 2,000
    # epochs, about 15 s each.
    long = {"epochs": 2000, "patience": None}
    plans = make_plans("repeat", 3, 0, StrategyOptions(variants=[DIVERGING, long, long]))
    with pytest.raises(ConfigError, match=r"^m000 diverged at epoch 1 "):
        train_on_ray(plans, digits, EARLY_STOPPED, None, lambda: None)
    assert len(set(cancelled)) == 2  # Ray may miss a task being handed over: asked again
    for ref in set(cancelled):  # and every one is cancelled, not left to train: a task that
        # ran on would return its member (or time out) here instead of raising. The wait is
        # long because a loaded machine is slow to deliver a cancellation, not because the
        # run waited: it failed as soon as m000 did (a wall-clock limit would be flaky).
        # (a worker stopped by a forced cancellation reports itself as crashed)
        stopped = (
            ray_cluster.exceptions.TaskCancelledError,
            ray_cluster.exceptions.WorkerCrashedError,
        )
        with pytest.raises(stopped):
            ray_cluster.get(ref, timeout=60)


def test_a_task_the_cluster_lost_names_its_member(ray_module: ModuleType) -> None:
    lost = ray_module.exceptions.WorkerCrashedError()
    error = ray_engine._member_error(ray_module, MemberPlan(4, 0), lost)
    assert isinstance(error, EnsembleError)
    assert str(error) == (
        "m004 could not train on the Ray cluster: WorkerCrashedError: The worker died "
        "unexpectedly while executing this task. Check python-core-worker-*.log files for "
        "more information; check the cluster's workers (memory, logs) and run again, or use "
        "--engine loop"
    )


def test_an_unexpected_error_keeps_its_type_with_the_member_noted(
    ray_module: ModuleType,
) -> None:
    failed = ray_module.exceptions.RayTaskError("train", "Traceback …", RuntimeError("boom"))
    error = ray_engine._member_error(ray_module, MemberPlan(2, 0), failed)
    assert type(error) is RuntimeError and str(error) == "boom"
    assert error.__notes__ == ["raised while m002 trained on Ray"]
