"""The Ray engine: the members of an independent strategy as tasks on a Ray cluster.

Each task trains one member with :func:`~ensembles.training.members.train_planned_member`
(one torch thread, the same function as the loop engine) and returns its numpy state and
history; the training data go to the object store once. Ray is an optional extra
(``pip install -e '.[ray]'`` in the checkout, or ``ray`` itself) and is imported here
only, when the engine runs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import numpy as np

from ensembles.errors import ConfigError, EnsembleError
from ensembles.machine import usable_cores
from ensembles.training.config import TrainConfig
from ensembles.training.members import TrainedMember, TrainingData, train_planned_member
from ensembles.training.plans import MemberPlan

logger = logging.getLogger(__name__)

#: The one line for ``--engine ray`` where Ray is not installed (this project is not on
#: PyPI: ``pip install 'ensembles[ray]'`` would fetch another package of that name).
RAY_MISSING = (
    "--engine ray needs Ray, which is not installed: pip install 'ray>=2.40' (or pip "
    "install -e '.[ray]' in the checkout), or choose --engine loop"
)
#: Rounds of ``ray.cancel`` after a failure, and seconds each waits for the tasks to stop.
CANCEL_ROUNDS = 5
CANCEL_WAIT_S = 1.0


def train_on_ray(
    plans: list[MemberPlan],
    data: TrainingData,
    config: TrainConfig,
    address: str | None,
    on_member_done: Callable[[], None],
) -> list[TrainedMember]:
    """Train every planned member as one Ray task (one CPU, one torch thread each).

    A Ray already initialised in this process (a notebook, a test session, a driver that
    chose its own ``runtime_env``) is used as it is and left running. Otherwise ``address``
    None starts a local cluster on this machine, with one CPU per member up to the
    machine's CPUs and no dashboard (``RAY_ADDRESS`` is not read: pass ``auto``), and any
    other address connects to that cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``);
    either way the engine shuts down what it started when it returns or fails.

    Workers must import ``ensembles`` and torch: a local cluster shares this interpreter's
    environment; a remote one needs this package with its ``train`` extra installed on every node.

    Parameters
    ----------
    plans : list of MemberPlan
        One per member.
    data : TrainingData
        Put in the object store once and shared by every task.
    config : TrainConfig
        Settings with a numeric learning rate (each plan's ``settings`` override it).
    address : str or None
        The cluster to connect to when Ray is not initialised; None: a local one.
    on_member_done : callable
        Called once as each member finishes, in the order they finish (progress).

    Returns
    -------
    list of TrainedMember
        In plan order; the same members as the loop engine for the same plans.

    Raises
    ------
    ConfigError
        Ray is not installed, the cluster cannot be reached, or a member's run failed the
        way it fails in the loop (e.g. ``m002 diverged at epoch 1 …``). The first failed
        member fails the run, named in the message, and the other tasks are cancelled.
    EnsembleError
        A member's task was lost by the cluster (its worker or node died, memory ran out).
    """
    ray = _import_ray()
    started = _connect(ray, address, len(plans))
    try:
        return _run_tasks(ray, plans, data, config, on_member_done)
    finally:
        if started:
            ray.shutdown()


def _import_ray() -> ModuleType:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(RAY_MISSING) from exc
    return ray


def _connect(ray: ModuleType, address: str | None, n_members: int) -> bool:
    """Make sure Ray is initialised; True when this call initialised it."""
    if ray.is_initialized():
        if address is not None:
            logger.warning("Ray is already initialised: --ray-address %s is not used", address)
        return False
    if address is None:
        # "local" starts a cluster even when RAY_ADDRESS or a `ray start` cluster exists.
        cpus = min(n_members, usable_cores())
        ray.init(address="local", num_cpus=cpus, include_dashboard=False)
        return True
    try:
        ray.init(address=address)
    except ConnectionError as exc:
        raise ConfigError(
            f"cannot connect to the Ray cluster at '{address}': {_first_line(exc)}; "
            "check --ray-address, or omit it to train on a local cluster"
        ) from exc
    return True


def _run_tasks(
    ray: ModuleType,
    plans: list[MemberPlan],
    data: TrainingData,
    config: TrainConfig,
    on_member_done: Callable[[], None],
) -> list[TrainedMember]:
    """Submit one task per plan and collect the members as they finish."""
    logger.info(
        "training %d members on Ray (%g CPUs)", len(plans), ray.cluster_resources().get("CPU", 0)
    )
    task = ray.remote(_train_member).options(num_cpus=1)
    data_ref = ray.put(data)
    pending = {task.remote(plan, data_ref, config): plan for plan in plans}
    members: dict[int, TrainedMember] = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                plan = pending.pop(ref)
                try:
                    members[plan.index] = _owned(ray.get(ref))
                except ray.exceptions.RayError as exc:
                    raise _member_error(ray, plan, exc) from exc
                on_member_done()
    finally:
        _cancel(ray, list(pending))  # after a failure or Ctrl-C: empty once every member is in
    return [members[plan.index] for plan in plans]


def _cancel(ray: ModuleType, refs: list[Any]) -> None:
    """Cancel the tasks of ``refs`` and wait (briefly) until each is cancelled or done.

    Ray can miss the cancellation of a task that is being handed to a worker, and on a
    loaded machine a polite cancellation (an interrupt raised in the task) was still not
    delivered after five rounds, so the task trained to the end; tasks still unfinished
    after the first round are cancelled again by stopping their worker (``force=True``).
    """
    for round_ in range(CANCEL_ROUNDS):
        if not refs:
            return
        for ref in refs:
            ray.cancel(ref, force=round_ > 0)
        _, refs = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
    if refs:
        logger.warning("%d cancelled Ray tasks are still running", len(refs))


def _train_member(plan: MemberPlan, data: TrainingData, config: TrainConfig) -> TrainedMember:
    """One task: :func:`train_planned_member` on the object store's read-only arrays.

    Torch warns when it wraps a read-only array; training only reads its inputs (every
    transform makes new tensors), so the data are shared rather than copied per task.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        return train_planned_member(plan, data, config)


def _owned(member: TrainedMember) -> TrainedMember:
    """The member with writable arrays of its own.

    Ray hands results back as read-only arrays, possibly views of its object store's shared
    memory: torch warns when it wraps them (``torch.from_numpy``), and the members outlive
    the local cluster the engine shuts down.
    """
    return replace(member, state={key: np.array(value) for key, value in member.state.items()})


def _member_error(ray: ModuleType, plan: MemberPlan, exc: Exception) -> Exception:
    """The project's error for a member's failed task, naming the member.

    The task's own exception is raised again (``m002 diverged …`` stays a
    ``ConfigError`` with that message); an unexpected one keeps its type and gets a note
    naming the member; a task the cluster lost becomes an :class:`EnsembleError`.
    """
    who = plan.member_id
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        if isinstance(cause, EnsembleError):
            message = str(cause)
            if message.startswith(who):
                return cause
            try:  # the same type, when it takes a message alone (most of ours do)
                return type(cause)(f"{who}: {message}")
            except TypeError:
                return EnsembleError(f"{who}: {message}")
        cause.add_note(f"raised while {who} trained on Ray")
        return cause
    return EnsembleError(
        f"{who} could not train on the Ray cluster: {type(exc).__name__}: {_first_line(exc)}; "
        "check the cluster's workers (memory, logs) and run again, or use --engine loop"
    )


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (Ray's run to many), without its full stop."""
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(".") if lines else ""
