"""What can be known before any member trains: the options, the rows, the combiners' fit rows.

Every check here runs before training, so a run that cannot succeed fails in seconds with
one line, never after every member has trained.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import TYPE_CHECKING

import numpy as np

from ensembles.data import MAX_SEED, Dataset, Splits, fraction_problems
from ensembles.default_choice import MEAN_MISSING, REFERENCE
from ensembles.errors import ConfigError, DataError
from ensembles.evaluation import check_combiner_names, combiner_fit_problems
from ensembles.heldout import HeldoutPredictions, SplitPredictions, combiner_fit_set
from ensembles.manifest import ONE_RUN_STRATEGIES, WEIGHT_AVERAGE, Task
from ensembles.store import validate_name
from ensembles.training.budget import explicit_budget
from ensembles.training.config import (
    BALANCED_REGRESSION,
    ENGINES,
    REGULARIZATIONS,
    SOUP_METHODS,
    STRONGER_REGULARIZATION,
    TrainConfig,
)
from ensembles.training.members import member_budget
from ensembles.training.one_run import horizontal_window_problem, one_run_option_problems
from ensembles.training.plans import subsample_fraction_problem
from ensembles.training.ray_engine import RAY_MISSING
from ensembles.training.refit import refit_option_problem
from ensembles.training.strategies import INDEPENDENT_STRATEGIES, STRATEGIES, variant_problems
from ensembles.training.weight_averaging import check_weight_averaging

if TYPE_CHECKING:  # the request is defined by the pipeline, which imports this module
    from ensembles.training.pipeline import TrainRequest

logger = logging.getLogger(__name__)


#: The most members an ensemble may have. Past a few tens an ensemble gains next to nothing
#: (docs/benchmark.md), and the combiners' fits grow faster than the members: a million
#: members trained for a minute, then the blend fit asked for 76 TiB.
MAX_MEMBERS = 1000


def placeholder_heldout(splits: Splits, n_members: int) -> HeldoutPredictions:
    """Held-out predictions of members not trained yet: real rows, placeholder outputs.

    Every member "predicts" uniform class probabilities (classification) or zeros
    (regression) on the validation and test splits, so
    :func:`~ensembles.heldout.combiner_fit_set` assembles exactly the rows and targets the
    combiners will be fitted on (the validation split, for every strategy).

    Parameters
    ----------
    splits : Splits
    n_members : int
        Members the strategy will train.

    Returns
    -------
    HeldoutPredictions
        Member outputs of shape (n_members, n_samples, n_outputs) on each split; no
        training-split predictions.
    """

    def split(dataset: Dataset) -> SplitPredictions:
        n_outputs = dataset.n_outputs
        value = 1.0 / n_outputs if dataset.task == "classification" else 0.0
        preds = np.full((n_members, len(dataset.y), n_outputs), value)
        return SplitPredictions(dataset.X, dataset.y, preds)

    return HeldoutPredictions(split(splits.validation), split(splits.test))


def wants_weight_averaging(request: TrainRequest) -> bool:
    """Whether the run publishes a weight-averaged model (refusing one that cannot be)."""
    if _asks_weight_averaging(request):
        check_weight_averaging(request.strategy, request.force_weight_averaging)
        return True
    return request.combiners is None and request.strategy not in INDEPENDENT_STRATEGIES


def _asks_weight_averaging(request: TrainRequest) -> bool:
    """Whether the options ask for a weight-averaged model (``--combiners``, forced)."""
    named = request.combiners is not None and WEIGHT_AVERAGE in request.combiners
    return named or request.force_weight_averaging


def validated_config(request: TrainRequest) -> TrainConfig:
    """The training configuration, after every option problem is collected into one line."""
    problems = []
    if request.strategy not in STRATEGIES:
        problems.append(
            f"unknown --strategy '{request.strategy}': choose one of {', '.join(STRATEGIES)}"
        )
    minimum = 2 if request.strategy == "kfold" else 1
    if request.members < minimum:
        problems.append(
            f"--members must be at least {minimum} for {request.strategy}, got {request.members}"
        )
    elif request.members > MAX_MEMBERS:
        problems.append(f"--members must be at most {MAX_MEMBERS}, got {request.members}")
    if not 0 <= request.seed <= MAX_SEED:
        problems.append(f"--seed must be in [0, {MAX_SEED}], got {request.seed}")
    if request.jobs < 1:
        problems.append(f"--jobs must be at least 1, got {request.jobs}")
    if not 0 < request.interval_level < 1:
        problems.append(f"--interval-level must be between 0 and 1, got {request.interval_level}")
    problems += fraction_problems(request.validation_fraction, request.test_fraction)
    problems += _choice_problems(request)
    problems += _unused_option_problems(request)
    problems += _variant_problems(request)
    problems += _strategy_option_problems(request)
    if unknown := sorted(set(request.pinned_settings) - set(STRONGER_REGULARIZATION)):
        problems.append(
            f"pinned_settings names {unknown}; only {list(STRONGER_REGULARIZATION)} can be pinned"
        )
    averaging = _asks_weight_averaging(request)
    if refit := refit_option_problem(request.refit, request.strategy, averaging):
        problems.append(refit)
    if problems:
        raise ConfigError("; ".join(problems))
    validate_name(request.ensemble_name)
    if request.epochs is not None:
        return request.config.with_overrides({"epochs": request.epochs})
    return request.config


def _choice_problems(request: TrainRequest) -> list[str]:
    """Values outside their choices (the CLI's argparse refuses them; the API would not)."""
    choices = {
        "engine": ENGINES,
        "regularization": REGULARIZATIONS,
        "weight_averaging": SOUP_METHODS,
    }
    problems = [
        f"unknown --{name.replace('_', '-')} '{getattr(request, name)}': choose one of "
        f"{', '.join(allowed)}"
        for name, allowed in choices.items()
        if getattr(request, name) not in allowed
    ]
    # one-run strategies ignore the engine
    ray = request.engine == "ray" and request.strategy in INDEPENDENT_STRATEGIES
    if ray and not _ray_installed():
        problems.append(RAY_MISSING)
    return problems


def _ray_installed() -> bool:
    """Whether ``import ray`` can work, asked without importing it (that takes seconds)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # in sys.modules without a spec: None there blocks the import
        return sys.modules.get("ray") is not None


def _unused_option_problems(request: TrainRequest) -> list[str]:
    """Options that would change nothing in this run: refused, not silently ignored."""
    problems = []
    averaging = _asks_weight_averaging(request) or (
        request.combiners is None and request.strategy not in INDEPENDENT_STRATEGIES
    )
    if request.weight_averaging != "uniform" and not averaging:
        independent = request.strategy in INDEPENDENT_STRATEGIES
        combiners = " with these --combiners" if request.combiners is not None else ""
        remedy = "--force-weight-averaging" if independent else "weight_average to --combiners"
        problems.append(
            f"--weight-averaging {request.weight_averaging} applies to a weight-averaged model, "
            f"which --strategy {request.strategy}{combiners} does not publish: drop it, or "
            f"add {remedy}"
        )
    if request.stack_passthrough and "stack" not in (request.combiners or ("stack",)):
        problems.append(
            "--stack-passthrough applies to the stack combiner: add stack to --combiners "
            "or drop --stack-passthrough"
        )
    if request.ray_address is not None and request.engine != "ray":
        problems.append(
            f"--ray-address is for --engine ray, not --engine {request.engine}: add "
            "--engine ray or drop --ray-address"
        )
    return problems


def _strategy_option_problems(request: TrainRequest) -> list[str]:
    """The problems of the strategy's own options (they would surface only mid-training)."""
    options = request.options
    if request.strategy in ONE_RUN_STRATEGIES:
        config = request.config
        problems = one_run_option_problems(
            request.strategy, config, options.spacing, options.peak_learning_rate
        )
        epochs = request.epochs or config.epochs
        if request.strategy == "horizontal" and epochs is not None and options.spacing >= 1:
            budget = explicit_budget(epochs, None, 0)
            if problem := horizontal_window_problem(request.members, options.spacing, budget):
                problems.append(problem)
        return problems
    if request.strategy == "subsample":
        problem = subsample_fraction_problem(options.subsample_fraction)
        return [problem] if problem else []
    return []


def _variant_problems(request: TrainRequest) -> list[str]:
    """The problems of ``options.variants``, collected with the other option problems."""
    variants = request.options.variants
    if isinstance(variants, list) and not variants:
        return []
    if request.strategy != "repeat":
        return [f"setting variants apply to --strategy repeat, not {request.strategy}"]
    # repeat members are averaged only when forced: asking alone is refused
    return variant_problems(variants, request.config, same_layout=request.force_weight_averaging)


def check_before_training(
    request: TrainRequest, config: TrainConfig, splits: Splits
) -> tuple[str, ...]:
    """Fail before any member trains on what the split and the options already rule out.

    ``config`` is :func:`validated_config`'s answer for ``request``.

    Returns
    -------
    tuple of str
        The combiners to fit: those named by ``combiners``, or every default one but those
        that cannot be fitted on the rows they would get (left out with a warning: an
        optional combiner never stops the default path).

    Raises
    ------
    ConfigError, DataError
        One line naming the problem and what to change.
    """
    _check_rows(request, splits)
    _check_horizontal_window(request, config, splits)
    check_task_options(request, splits.train.task)
    _check_combiners(request, splits.train.task)
    return _check_combiner_rows(request, splits)


def _check_rows(request: TrainRequest, splits: Splits) -> None:
    n_train = len(splits.train.y)
    if request.strategy == "kfold" and n_train < 2 * request.members:
        raise ConfigError(
            f"{n_train} training rows are too few for {request.members} folds "
            f"(need at least {2 * request.members}); lower --members"
        )


def _check_horizontal_window(request: TrainRequest, config: TrainConfig, splits: Splits) -> None:
    """Refuse a horizontal window longer than the budget rule's cap on these rows: it would
    publish fewer members than asked (against explicit ``--epochs``, an option problem)."""
    if request.strategy != "horizontal" or config.epochs is not None:
        return
    budget = member_budget(config, len(splits.train.y))
    if problem := horizontal_window_problem(request.members, request.options.spacing, budget):
        raise ConfigError(problem)


def check_task_options(request: TrainRequest, task: Task) -> None:
    """Refuse options that do not apply to ``task`` (class weights, temperature scaling
    for regression, a regression ensemble without any variance), once the task is known.

    Raises
    ------
    ConfigError
        One line naming the option.
    """
    _check_class_weight(request, task)
    _check_calibrate(request, task)
    _check_spread(request, task)


def _check_spread(request: TrainRequest, task: Task) -> None:
    """Refuse a regression ensemble with nothing to draw a variance from.

    One member without a Gaussian head has no member disagreement and no variance head:
    its intervals would have zero width and its Gaussian NLL no bound.
    """
    if task == "regression" and request.members == 1 and not request.config.gaussian_head:
        raise ConfigError(
            "--members 1 with --no-gaussian-head leaves a regression ensemble no variance "
            "to give intervals from (no member disagreement, no variance head): add members "
            "or keep the Gaussian head"
        )


def _check_calibrate(request: TrainRequest, task: Task) -> None:
    if request.calibrate and task == "regression":
        raise ConfigError(
            "--calibrate (temperature scaling) applies to classification; a regression "
            "ensemble's variance is calibrated on the validation rows anyway: drop --calibrate"
        )


def _check_class_weight(request: TrainRequest, task: Task) -> None:
    """Refuse class weights, in the options or a ``--variants`` item, for a regression task.

    Runs after :func:`validated_config`, so the variants are a list of valid overrides.
    """
    if task == "classification":
        return
    settings = [("--class-weight", request.config.class_weight)]
    settings += [
        (f"--variants item {number}: class_weight", variant.get("class_weight"))
        for number, variant in enumerate(request.options.variants, 1)
    ]
    refused = [
        BALANCED_REGRESSION.format(setting=name) for name, value in settings if value == "balanced"
    ]
    if refused:
        raise ConfigError("; ".join(refused))


def _check_combiners(request: TrainRequest, task: Task) -> None:
    """Fail before training on combiner options that cannot be honoured."""
    names = check_combiner_names(request.combiners, task)
    averaged = wants_weight_averaging(request)
    if request.default_combiner is None:
        if REFERENCE not in names:
            raise ConfigError(MEAN_MISSING)
        return
    if request.default_combiner not in (*names, *((WEIGHT_AVERAGE,) if averaged else ())):
        raise ConfigError(
            f"--default-combiner '{request.default_combiner}' was not fitted; "
            f"fitted: {', '.join(names)}"
        )


def _check_combiner_rows(request: TrainRequest, splits: Splits) -> tuple[str, ...]:
    """The combiners to fit; fail before training when one asked for (by ``combiners``
    or ``default_combiner``) cannot be fitted on the rows it will get, and leave out with a
    warning a default one that cannot (never ``mean``).

    Too few fit rows, or a class missing from them or from a cross-fitting half, would
    otherwise only fail once every member has trained.
    """
    task = splits.train.task
    fit_set = combiner_fit_set(placeholder_heldout(splits, request.members))

    def problems(calibrate: bool) -> dict[str, str]:
        return combiner_fit_problems(
            task,
            fit_set,
            request.combiners,
            calibrate,
            request.interval_level,
            request.stack_passthrough,
        )

    names = check_combiner_names(request.combiners, task)
    found = problems(request.calibrate)
    if not found:
        return names
    fitting = [name for name in names if name not in found]
    required = {REFERENCE, request.default_combiner}
    if request.combiners is None and not required & set(found):
        logger.warning(
            "left out of the default combiners, as the %s rows are too few to fit them: %s",
            fit_set.record["source"],
            "; ".join(found.values()),
        )
        return tuple(fitting)
    fitting += [WEIGHT_AVERAGE] if wants_weight_averaging(request) else []
    advice = "add rows or raise --validation-fraction"
    if fitting:
        advice += f", or fit only --combiners {' '.join(fitting)}"
    if request.calibrate and not problems(False):
        advice += ", or drop --calibrate"
    raise DataError(
        f"the {fit_set.record['source']} rows are too few to fit every combiner: "
        f"{'; '.join(found.values())}; {advice}"
    )
