"""The main job: data -> members -> ONNX -> combiners -> one atomically published version."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ensembles import defaults
from ensembles.data import Dataset, Splits, load_data, split_dataset
from ensembles.export import export_member
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions
from ensembles.manifest import Manifest, Strategy, Task
from ensembles.reproduction import TEST_OUTPUTS_FILE, save_test_outputs
from ensembles.store import ModelStore, name_from
from ensembles.training.combining import AVERAGED_FILE, combine
from ensembles.training.config import Engine, Refit, Regularization, SoupMethod, TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.members import TrainedMember, TrainingData
from ensembles.training.network import MemberNetwork
from ensembles.training.plans import out_of_sample_rows
from ensembles.training.preflight import (
    check_before_training,
    validated_config,
    wants_weight_averaging,
)
from ensembles.training.record import version_manifest
from ensembles.training.refit import served_members
from ensembles.training.regularization import (
    choose_regularization,
    members_validation_losses,
    regularization_problem,
)
from ensembles.training.strategies import (
    RESAMPLING_STRATEGIES,
    StrategyOptions,
    train_members,
)
from ensembles.training.weight_averaging import averaged_network

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
    interval_level: float = defaults.INTERVAL_LEVEL
    progress: bool = True

    @property
    def ensemble_name(self) -> str:
        """The name the version is published under."""
        if self.name:
            return self.name
        return name_from(_file_stem(Path(self.csv)) if self.csv else (self.dataset or ""))


#: File name endings left out of the ensemble name a CSV gives (``sales.csv.gz``: sales).
_DATA_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".gz", ".bz2", ".xz", ".zip", ".zst"})


def _file_stem(path: Path) -> str:
    """The name of ``path`` without its data and compression suffixes."""
    while path.suffix.lower() in _DATA_SUFFIXES:
        path = path.with_suffix("")
    return path.name


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
    combiner_names = check_before_training(request, config, splits)
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
    averaged = None
    if wants_averaging:
        averaged = averaged_network(
            request.weight_averaging, networks, data.X_train, splits.validation
        )
    served, served_networks, params["refit"] = served_members(
        request, config, data, members, networks, params["learning_rate"]["rate"], wants_averaging
    )
    heldout = predict_heldout(request, splits, members, networks, served_networks)
    combined = combine(request, splits.train.task, heldout, members, averaged, combiner_names)

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
        save_test_outputs(folder / TEST_OUTPUTS_FILE, combined.test_outputs)
        return version_manifest(
            request,
            config,
            version,
            splits,
            members,
            served,
            served_networks,
            params,
            combined,
            parity,
        )

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
