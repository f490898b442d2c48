"""The main job: data -> members -> ONNX -> combiners -> one atomically published version."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ensembles import defaults
from ensembles.data import Dataset, Splits, load_data, split_dataset
from ensembles.default_choice import choose_default, mean_mistakes, ranking_loss
from ensembles.evaluation import (
    baseline_metrics,
    evaluate_predictions,
    fit_combiners,
    out_of_sample_scores,
    row_losses,
    variance_scale,
)
from ensembles.export import export_member, output_spec
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions, combiner_fit_set
from ensembles.manifest import (
    CombinerInfo,
    EnsembleOutOfSampleInfo,
    InputSpec,
    Manifest,
    MemberInfo,
    OutOfSampleInfo,
    Strategy,
    StrategyInfo,
    Task,
)
from ensembles.reproduction import (
    TEST_OUTPUTS_FILE,
    WEIGHT_AVERAGE,
    combiner_test_outputs,
    save_test_outputs,
)
from ensembles.store import ModelStore
from ensembles.training.config import Engine, Refit, Regularization, SoupMethod, TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.members import TrainedMember, TrainingData
from ensembles.training.network import MemberNetwork
from ensembles.training.plans import out_of_sample_rows, training_rows
from ensembles.training.preflight import (
    check_before_training,
    validated_config,
    wants_weight_averaging,
)
from ensembles.training.refit import served_members
from ensembles.training.regularization import (
    choose_regularization,
    members_validation_losses,
    regularization_problem,
)
from ensembles.training.strategies import (
    INDEPENDENT_STRATEGIES,
    RESAMPLING_STRATEGIES,
    StrategyOptions,
    train_members,
)
from ensembles.training.weight_averaging import average_weights, greedy_soup

AVERAGED_FILE = "averaged.onnx"
CURVES_FILE = "curves.json"


@dataclass(frozen=True)
class TrainRequest:
    """Everything the main job needs; every field has a working default.

    Attributes
    ----------
    dataset : str or None
        Built-in dataset name; ignored when ``csv`` is given.
    csv, target : user CSV file and its target column.
    categorical, numeric : CSV columns forced to that kind (inferred otherwise).
    task : forced task for a CSV (inferred when None).
    strategy : one of bagging, kfold, subsample, repeat, horizontal, snapshot.
    members : members (snapshot cycles, horizontal checkpoints, folds, runs).
    epochs : overrides ``config.epochs`` when given.
    name : ensemble name (default: the dataset name or the CSV file's stem).
    store : model store folder or fsspec URL (``s3://bucket/prefix``, ``memory://``).
    seed : seeds the split and every member.
    jobs : processes for independent members (loop engine).
    engine : where independent members train (``auto``, ``loop``, ``packed``, ``ray``).
    ray_address : the Ray cluster of ``engine="ray"`` (None: a local one).
    refit : train independent members again on training + validation rows for the epochs
        the validation rows found (``auto``: on small data under the budget rule, members
        that peaked after its minimum steps; see
        :func:`~ensembles.training.refit.refit_problem`).
    regularization : also train the members with stronger regularization and keep the
        ensemble with the lower validation loss (``auto``: on small data under the budget
        rule with none of activation, dropout and input noise given; see
        :func:`~ensembles.training.regularization.regularization_problem`).
    pinned_settings : names of those three settings the user gave, whatever their value:
        ``auto`` leaves the members' settings as given when there is any.
    config : TrainConfig of each member (as given; the manifest records the one trained).
    options : StrategyOptions.
    combiners : names of the combiners to fit (None: every one that applies).
    default_combiner : overrides the automatic choice (mean unless a learned combiner beats
        it beyond noise, see :func:`~ensembles.default_choice.choose_default`).
    calibrate : temperature-scale the combined classification outputs.
    stack_passthrough : stacking also sees the raw features.
    weight_averaging : ``uniform`` (SWA) or ``greedy`` (soup).
    force_weight_averaging : average independent members anyway.
    interval_level : central prediction interval level (regression).
    validation_fraction, test_fraction : shares of rows for the validation and test splits
        (validation None: :func:`~ensembles.data.validation_share` of the rows).
    progress : show progress bars.
    """

    dataset: str | None = "digits"
    csv: Path | None = None
    target: str | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    task: Task | None = None
    strategy: Strategy = defaults.STRATEGY
    members: int = defaults.MEMBERS
    epochs: int | None = None
    name: str | None = None
    store: str | Path = Path("model_store")
    seed: int = 0
    jobs: int = 1
    engine: Engine = "auto"
    ray_address: str | None = None
    refit: Refit = "auto"
    regularization: Regularization = "auto"
    pinned_settings: tuple[str, ...] = ()
    config: TrainConfig = field(default_factory=TrainConfig)
    options: StrategyOptions = field(default_factory=StrategyOptions)
    validation_fraction: float | None = None
    test_fraction: float = defaults.TEST_FRACTION
    combiners: tuple[str, ...] | None = None
    default_combiner: str | None = None
    calibrate: bool = False
    stack_passthrough: bool = False
    weight_averaging: SoupMethod = "uniform"
    force_weight_averaging: bool = False
    interval_level: float = 0.9
    progress: bool = True

    @property
    def ensemble_name(self) -> str:
        """The name the version is published under."""
        if self.name:
            return self.name
        stem = Path(self.csv).stem if self.csv else (self.dataset or "ensemble")
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem.lower()).strip("-_")


@dataclass
class TrainReport:
    """What a finished run published, for summaries.

    ``members`` are the members trained on the training rows (their curves, best epochs
    and seconds); after a refit the published ones are their retraining on training +
    validation rows, recorded in the manifest (``strategy.params.refit``).
    """

    manifest: Manifest
    members: list[TrainedMember]
    seconds: float
    store: str | Path


def train_ensemble(request: TrainRequest) -> Manifest:
    """Run the main job and return the published manifest (see :func:`run_training`)."""
    return run_training(request).manifest


def run_training(request: TrainRequest) -> TrainReport:
    """Load data, train members, export them, fit combiners and publish one version.

    Nothing is written to the store until every member is trained, exported and checked;
    then the version appears atomically, or not at all.

    Raises
    ------
    ConfigError, DataError, ExportError, StoreError
        With a one-line message naming the problem.
    """
    start = time.perf_counter()
    config = validated_config(request)
    store = ModelStore(request.store)
    store.check_can_publish(request.ensemble_name)  # a bad URL, a read-only folder: now
    splits = split_dataset(
        load_dataset(request), request.seed, request.validation_fraction, request.test_fraction
    )
    check_before_training(request, config, splits)
    data = TrainingData.from_splits(splits)
    wants_averaging = wants_weight_averaging(request)
    n_rows = len(data.y_train) + len(data.y_val)
    problem = regularization_problem(
        request.regularization,
        config,
        request.options.variants,
        n_rows,
        request.pinned_settings,
    )
    (members, params), config, regularization = choose_regularization(
        config,
        problem,
        lambda settings: train_members(
            request.strategy,
            request.members,
            data,
            settings,
            request.seed,
            request.options,
            request.jobs,
            request.progress,
            request.engine,
            request.ray_address,
        ),
        lambda trained: members_validation_losses(trained[0], data),
        lambda trained: trained[1]["learning_rate"]["rate"],
    )
    params["regularization"] = regularization
    networks = [member.network(data) for member in members]
    averaged = _weight_average(request, data, networks, splits) if wants_averaging else None
    served, served_networks, params["refit"] = served_members(
        request, config, data, members, networks, params["learning_rate"]["rate"], wants_averaging
    )
    heldout = predict_heldout(request, splits, members, networks, served_networks)

    def write(folder: Path, version: int) -> Manifest:
        parity = [
            export_member(
                network, folder / f"members/{member.plan.member_id}.onnx", splits.validation.X
            )
            for member, network in zip(served, served_networks, strict=True)
        ]
        if averaged is not None:
            export_member(averaged[0], folder / AVERAGED_FILE, splits.validation.X)
        heldout.save(folder / HELDOUT_FILE)
        curves = {member.plan.member_id: member.curves for member in members}
        (folder / CURVES_FILE).write_text(json.dumps(curves, indent=1, allow_nan=True))
        manifest = _manifest(
            request,
            config,
            version,
            splits,
            members,
            served,
            params,
            served_networks,
            heldout,
            averaged,
            parity,
        )
        outputs = combiner_test_outputs(manifest.combiners, heldout.test)
        if averaged is not None:
            outputs[WEIGHT_AVERAGE] = member_outputs(averaged[0], heldout.test.X)[0]
        save_test_outputs(folder / TEST_OUTPUTS_FILE, outputs)
        return manifest

    manifest = store.publish(request.ensemble_name, write)
    return TrainReport(manifest, members, time.perf_counter() - start, request.store)


def load_dataset(request: TrainRequest) -> Dataset:
    """The request's dataset: a CSV when ``csv`` is set, else the built-in one."""
    return load_data(
        request.dataset,
        request.csv,
        request.target,
        request.task,
        request.seed,
        request.categorical,
        request.numeric,
    )


def predict_heldout(
    request: TrainRequest,
    splits: Splits,
    members: list[TrainedMember],
    networks: list[MemberNetwork],
    served_networks: list[MemberNetwork],
) -> HeldoutPredictions:
    """Member predictions on validation and test, and out-of-sample ones on training rows.

    Validation and training rows are predicted by ``networks`` (the members trained on the
    training rows), test rows by ``served_networks`` (the same, or their refit). For
    resampling strategies ``train`` holds every member's predictions on the training split
    with NaN wherever the member trained on the row.
    """
    train = None
    n_train = len(splits.train.y)
    if request.strategy in RESAMPLING_STRATEGIES:
        full = split_predictions(splits.train, networks)
        mask = np.ones((len(members), n_train), dtype=bool)
        for index, member in enumerate(members):
            mask[index, out_of_sample_rows(member.plan.rows, n_train)] = False
        preds = np.where(mask[:, :, None], np.nan, full.member_preds)
        variances = None
        if full.member_variances is not None:
            variances = np.where(mask[:, :, None], np.nan, full.member_variances)
        train = SplitPredictions(full.X, full.y, preds, variances)
    validation = split_predictions(splits.validation, networks)
    return HeldoutPredictions(validation, split_predictions(splits.test, served_networks), train)


def split_predictions(dataset: Dataset, networks: list[MemberNetwork]) -> SplitPredictions:
    """Every member's predictions on the rows of ``dataset``.

    Returns
    -------
    SplitPredictions
        ``member_preds`` (and, for Gaussian heads, ``member_variances``) of shape
        (n_members, n_samples, n_outputs).
    """
    outputs = [member_outputs(network, dataset.X) for network in networks]
    preds = np.stack([output[0] for output in outputs])
    variances = np.stack([output[1] for output in outputs]) if len(outputs[0]) > 1 else None
    return SplitPredictions(dataset.X, dataset.y, preds, variances)


def _manifest(
    request: TrainRequest,
    config: TrainConfig,
    version: int,
    splits: Splits,
    members: list[TrainedMember],
    served: list[TrainedMember],
    params: dict[str, Any],
    networks: list[MemberNetwork],
    heldout: HeldoutPredictions,
    averaged: tuple[MemberNetwork, list[int]] | None,
    parity: list[float],
) -> Manifest:
    """The version's manifest.

    ``members`` trained on the training rows, and their curves, best epochs, budgets and
    validation scores describe the run; ``served`` are the members exported, with
    ``networks`` (the same ones, or their refit on training + validation rows: their rows
    and training seconds are recorded).
    """
    task = splits.train.task
    fit_set = combiner_fit_set(heldout)
    results, losses = fit_combiners(
        task,
        fit_set,
        heldout,
        request.combiners,
        request.calibrate,
        request.interval_level,
        request.stack_passthrough,
    )
    if averaged is not None:  # scored on the validation rows, which are the fit rows
        results[WEIGHT_AVERAGE], losses[WEIGHT_AVERAGE] = _averaged_result(
            request, averaged, heldout, members
        )
    default, choice = choose_default(
        results,
        losses,
        ranking_loss(fit_set.data),
        len(members),
        request.default_combiner,
        mean_mistakes(fit_set.data),
    )
    member_oob, ensemble_oob = _out_of_sample(request, task, heldout, len(members))
    n_rows = len(splits.train.y) + (len(splits.validation.y) if served is not members else 0)
    member_infos = []
    for member, server, difference, oob in zip(members, served, parity, member_oob, strict=True):
        final = member.curves[member.epoch - 1] if member.curves else {}
        seconds = member.seconds + (server.seconds if server is not member else 0.0)
        member_infos.append(
            MemberInfo(
                id=member.plan.member_id,
                file=f"members/{member.plan.member_id}.onnx",
                seed=member.plan.seed,
                rows={
                    **member.plan.rows,
                    "n_rows": len(training_rows(member.plan.rows, n_rows)),
                    "of": "training + validation" if served is not members else "training",
                },
                epoch=member.epoch,
                cycle=member.cycle,
                settings=member.plan.settings,
                val_metrics={
                    "val_loss": float(final.get("val_loss", float("nan"))),
                    "val_metric": float(final.get("val_metric", float("nan"))),
                    "onnx_max_diff": difference,
                    "train_seconds": seconds,
                },
                budget=member.budget or None,
                out_of_sample=oob,
            )
        )
    return Manifest(
        name=request.ensemble_name,
        version=version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        task=task,
        classes=splits.train.classes,
        input=InputSpec(feature_names=splits.train.feature_names),
        preprocessing=splits.train.tabular,
        output=output_spec(networks[0]),
        strategy=StrategyInfo(name=request.strategy, params=params),
        members=member_infos,
        files={},
        combiners=results,
        default_combiner=default,
        default_choice=choice,
        baselines=baseline_metrics(task, heldout, request.interval_level),
        out_of_sample=ensemble_oob,
        split={**splits.record, "source": splits.train.source},
        training={
            "config": config.to_dict(),
            "calibrate": request.calibrate,
            "interval_level": request.interval_level,
            "weight_averaging": request.weight_averaging if averaged is not None else None,
        },
        library_versions=_library_versions(),
    )


def _out_of_sample(
    request: TrainRequest, task: Task, heldout: HeldoutPredictions, n_members: int
) -> tuple[list[OutOfSampleInfo | None], EnsembleOutOfSampleInfo | None]:
    """Out-of-bag / out-of-fold scores of members and ensemble; None without resampling."""
    if heldout.train is None:
        return [None] * n_members, None
    return out_of_sample_scores(task, heldout.train, request.interval_level)


def _averaged_result(
    request: TrainRequest,
    averaged: tuple[MemberNetwork, list[int]],
    heldout: HeldoutPredictions,
    members: list[TrainedMember],
) -> tuple[CombinerInfo, np.ndarray]:
    """The averaged model as a combiner entry, and its loss on every validation row.

    One network, so its effective members are 1. It learned nothing from the validation
    rows (unless a greedy soup chose its members there, as ``fitted_on`` records), so they
    score it as held out.
    """
    network, chosen = averaged
    ids = [members[i].plan.member_id for i in chosen]
    level = request.interval_level

    def outputs(split: SplitPredictions) -> tuple[np.ndarray, np.ndarray | None]:
        output = member_outputs(network, split.X)
        return output[0], output[1] if len(output) > 1 else None

    test_pred, test_variance = outputs(heldout.test)
    pred, variance = outputs(heldout.validation)
    scale = variance_scale(heldout.validation, pred, variance)  # fitted on nothing else

    state = {
        "kind": WEIGHT_AVERAGE,
        "file": AVERAGED_FILE,
        "members": ids,
        "method": request.weight_averaging,
        "forced": request.strategy in INDEPENDENT_STRATEGIES,
    }
    fitted_on = {
        "source": "training rows (the members' own trajectory)",
        "selection": "validation" if request.weight_averaging == "greedy" else None,
    }
    info = CombinerInfo(
        kind=WEIGHT_AVERAGE,
        state=state,
        fitted_on=fitted_on,
        test_metrics=evaluate_predictions(
            heldout.test, test_pred, level, test_variance, scale or 1.0
        ),
        heldout_metrics=evaluate_predictions(
            heldout.validation, pred, level, variance, scale or 1.0
        ),
        effective_members=1.0,
        variance_scale=scale,
    )
    return info, row_losses(heldout.validation, pred, variance, scale or 1.0)


def _weight_average(
    request: TrainRequest, data: TrainingData, networks: list[MemberNetwork], splits: Splits
) -> tuple[MemberNetwork, list[int]]:
    if request.weight_averaging == "uniform":
        return average_weights(networks, data.X_train), list(range(len(networks)))
    validation = splits.validation

    def loss(network: MemberNetwork) -> float:
        pred = member_outputs(network, validation.X)[0]
        if validation.task == "classification":
            return float(
                -np.mean(np.log(np.clip(pred[np.arange(len(pred)), validation.y], 1e-15, 1)))
            )
        return float(np.mean((pred - validation.y) ** 2))

    return greedy_soup(networks, data.X_train, loss)


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "numpy", "onnx", "onnxruntime", "scikit-learn", "ensembles"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
