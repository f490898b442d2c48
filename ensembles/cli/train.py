"""``ensembles-train`` / ``python scripts/train.py``: train an ensemble and publish it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ensembles import defaults
from ensembles.cli.common import (
    DefaultsHelpFormatter,
    OneLineParser,
    add_data_options,
    data_option_problems,
    run_command,
)
from ensembles.cli.options import (
    add_learning_options,
    add_network_options,
    add_regularization_option,
    add_split_options,
    config_from_args,
    pinned_settings,
)
from ensembles.default_choice import FAMILY_ERROR
from ensembles.errors import ConfigError
from ensembles.manifest import (
    STRATEGIES,
    DefaultChoiceInfo,
    EnsembleOutOfSampleInfo,
    Manifest,
)
from ensembles.markdown import format_table
from ensembles.tabular import MISSING_LEVEL, OTHER_LEVEL
from ensembles.training.budget import MIN_STEPS
from ensembles.training.config import ENGINES, REFITS, SOUP_METHODS, settings_words

if TYPE_CHECKING:  # torch is imported only when training runs
    from ensembles.training.pipeline import TrainReport, TrainRequest


def build_parser() -> argparse.ArgumentParser:
    """The training command's options, with sensible defaults for every one."""
    parser = OneLineParser(
        prog="ensembles-train",
        description="Train an ensemble of MLPs, export every member to ONNX, fit the combiners "
        "on the validation split (held out from every member) and publish one version to the "
        "model store.",
        formatter_class=DefaultsHelpFormatter,
    )
    add_data_options(parser)
    ensemble = parser.add_argument_group("ensemble")
    ensemble.add_argument(
        "--strategy",
        default=defaults.STRATEGY,
        choices=STRATEGIES,
        help="how members are produced",
    )
    ensemble.add_argument(
        "--members",
        type=int,
        default=defaults.MEMBERS,
        help="members: snapshot cycles, horizontal checkpoints, folds or runs",
    )
    ensemble.add_argument("--name", default=None, help="ensemble name (default: the dataset's)")
    ensemble.add_argument(
        "--store",
        default="model_store",
        help="model store folder or fsspec URL (s3://bucket/prefix)",
    )
    ensemble.add_argument("--jobs", type=int, default=1, help="processes for independent members")
    ensemble.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="where independent members train: auto (packed when they share one layout), "
        "loop (one after another, --jobs processes), packed (one batched network), ray",
    )
    ensemble.add_argument(
        "--refit",
        default="auto",
        choices=REFITS,
        help="train independent members again on training + validation rows for the epochs "
        f"the validation rows found: auto (under the budget rule, up to "
        f"{defaults.REFIT_MAX_ROWS} rows, members that peaked after {MIN_STEPS} steps), on, off",
    )
    add_regularization_option(ensemble)
    ensemble.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster for --engine ray (default: start a local one on this machine)",
    )
    ensemble.add_argument(
        "--subsample-fraction",
        type=float,
        default=None,
        help="subsample: share of training rows per member (default 0.7)",
    )
    ensemble.add_argument(
        "--variants",
        default=None,
        help="repeat: JSON list of setting overrides cycled over members, e.g. "
        '\'[{"hidden_sizes": [64]}, {"learning_rate": 0.003}]\'',
    )
    ensemble.add_argument(
        "--spacing",
        type=int,
        default=None,
        help="horizontal: epochs between checkpoints (default 1)",
    )
    ensemble.add_argument(
        "--peak-learning-rate",
        type=float,
        default=None,
        help="snapshot: the rate every cycle restarts at (default 10 x --learning-rate)",
    )
    add_network_options(parser)
    add_learning_options(parser)
    combining = parser.add_argument_group("combiners")
    combining.add_argument(
        "--combiners",
        nargs="+",
        default=None,
        help="combiners to fit (default: all that apply): mean vote blend caruana stack "
        "weight_average",
    )
    combining.add_argument(
        "--default-combiner",
        default=None,
        help="the combiner served by default (default: mean, unless a learned combiner keeping "
        "2+ effective members beats it on held-out rows beyond noise: a one-sided "
        f"{FAMILY_ERROR * 100:g}%% test shared by the eligible combiners; mean stays when it "
        "classifies every held-out row right)",
    )
    combining.add_argument("--calibrate", action="store_true", help="temperature scaling")
    combining.add_argument(
        "--stack-passthrough",
        action="store_true",
        help="stacking also sees the raw features beside the member outputs",
    )
    combining.add_argument(
        "--weight-averaging",
        default="uniform",
        choices=SOUP_METHODS,
        help="how the weight_average combiner averages the members' weights: uniform (SWA) or "
        "greedy (a soup: members added best first while the validation loss improves)",
    )
    combining.add_argument(
        "--force-weight-averaging",
        action="store_true",
        help="average the weights of independent members anyway",
    )
    combining.add_argument(
        "--interval-level",
        type=float,
        default=defaults.INTERVAL_LEVEL,
        help="probability mass of the regression prediction intervals recorded and scored",
    )
    add_split_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def request_from_args(args: argparse.Namespace) -> TrainRequest:
    """Translate parsed options into a :class:`TrainRequest`, rejecting contradictions.

    Raises
    ------
    ConfigError
        Every problem of the options at once (data, strategy-only options, network and
        learning settings, and what :func:`~ensembles.training.preflight.validated_config`
        finds), joined by ``; ``.
    """
    from ensembles.training.config import TrainConfig
    from ensembles.training.pipeline import TrainRequest
    from ensembles.training.preflight import validated_config
    from ensembles.training.strategies import StrategyOptions

    problems = data_option_problems(args)
    only = {
        "subsample_fraction": "subsample",
        "variants": "repeat",
        "spacing": "horizontal",
        "peak_learning_rate": "snapshot",
    }
    for option, strategy in only.items():
        if getattr(args, option) is not None and args.strategy != strategy:
            flag = "--" + option.replace("_", "-")
            problems.append(f"{flag} applies to --strategy {strategy}, not {args.strategy}")
    variants = []
    if args.variants is not None:  # its items are checked with every other option
        try:
            variants = json.loads(args.variants)
        except json.JSONDecodeError as exc:
            problems.append(f"--variants is not valid JSON: {exc.msg} at column {exc.colno}")
    try:
        config = config_from_args(args)
    except ConfigError as exc:  # the other options are still checked, against the defaults
        problems.append(str(exc))
        config = TrainConfig()
    given = {option: getattr(args, option) for option in ("subsample_fraction", "spacing")}
    options = StrategyOptions(
        variants=variants,
        peak_learning_rate=args.peak_learning_rate,
        **{option: value for option, value in given.items() if value is not None},
    )
    request = TrainRequest(
        dataset=None if args.csv else (args.dataset or "digits"),
        csv=Path(args.csv) if args.csv else None,
        target=args.target,
        categorical=tuple(args.categorical),
        numeric=tuple(args.numeric),
        task=args.task,
        strategy=args.strategy,
        members=args.members,
        name=args.name,
        store=args.store,
        seed=args.seed,
        jobs=args.jobs,
        engine=args.engine,
        ray_address=args.ray_address,
        refit=args.refit,
        regularization=args.regularization,
        pinned_settings=pinned_settings(args),
        config=config,
        options=options,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        combiners=tuple(args.combiners) if args.combiners else None,
        default_combiner=args.default_combiner,
        calibrate=args.calibrate,
        stack_passthrough=args.stack_passthrough,
        weight_averaging=args.weight_averaging,
        force_weight_averaging=args.force_weight_averaging,
        interval_level=args.interval_level,
        progress=not args.quiet,
    )
    if not problems:
        return request
    try:
        validated_config(request)
    except ConfigError as exc:
        problems.append(str(exc))
    raise ConfigError("; ".join(problems))


def summary(report: TrainReport) -> str:
    """The end-of-run tables: members, combiners against the baselines, the default choice."""
    manifest = report.manifest
    parts = [_learning_line(manifest), _member_table(manifest), _combiner_table(manifest)]
    if manifest.preprocessing is not None or manifest.split.get("rows_without_target"):
        parts.insert(0, _columns_line(manifest))
    if manifest.out_of_sample is not None:
        parts.append(_out_of_sample_line(manifest.out_of_sample))
    if manifest.default_choice is not None:
        parts.append(_choice_table(manifest.default_choice))
    return "\n\n".join(parts) + (
        f"\n\npublished {manifest.name} version {manifest.version} in {report.seconds:.1f} s\n"
        f"serve it: python -m serving --store {report.store}"
    )


def _columns_line(manifest: Manifest) -> str:
    """The CSV's inferred schema: each column's kind and encoding, what was dropped."""
    spec, lines = manifest.preprocessing, []
    for column in spec.columns if spec is not None else []:
        if column.kind == "categorical":
            shared = [MISSING_LEVEL] * column.missing + [OTHER_LEVEL] * column.other
            how = " + ".join([f"{len(column.levels)} levels", *shared])
        elif column.kind == "boolean":
            how = f"{column.true_token}/{column.false_token}"
        else:
            how = "number"
        missing = f", missing -> median {column.fill:g} + indicator" if column.indicator else ""
        lines.append(f"  {column.name}: {column.kind} ({how}{missing})")
    for dropped in spec.dropped if spec is not None else []:
        lines.append(f"  {dropped.name}: dropped, {dropped.reason}")
    if rows := manifest.split.get("rows_without_target"):
        lines.append(f"  dropped {rows} row(s) with an empty target (cannot be trained or scored)")
    return "columns:\n" + "\n".join(lines)


def _learning_line(manifest: Manifest) -> str:
    """How the learning rate and the budget were chosen, in one line."""
    rate = manifest.strategy.params.get("learning_rate") or {}
    if rate.get("rule") == "given":
        words = f"learning rate {rate['rate']:g} (given)"
    elif rate:
        words = (
            f"learning rate {rate['rate']:g} (range test, {rate['seconds']:.1f} s: {rate['rule']})"
        )
    else:
        words = "learning rate: not recorded"
    params = manifest.strategy.params
    budgets = [member.budget or {} for member in manifest.members]
    budget = budgets[0]
    if "cycle_rule" in params:
        words += f"; snapshot cycles: {params['cycle_rule']}"
    elif len({(b.get("rule"), b.get("max_epochs")) for b in budgets}) > 1:
        words += "; budget: per member, in the table below"
    elif budget.get("rule") == "data":
        words += (
            f"; budget from the data: stop after {budget['patience']} epochs without a better "
            f"validation loss, not before epoch {budget['min_epochs']}, at most "
            f"{budget['max_epochs']} ({budget['steps_per_epoch']} steps per epoch)"
        )
    elif budget:
        given = params.get("requested_epochs", budget["max_epochs"])
        words += f"; budget: {given} epochs (given)"
        if given != budget["max_epochs"]:
            words += f", {budget['max_epochs']} run to end on a whole cycle"
    choice = params.get("regularization") or {}
    if choice.get("tried"):
        losses = choice["validation_loss"]
        words += (
            f"; regularization: {choice['chosen']} kept (validation loss "
            f"{losses['as given']:.4g} as given, {losses['stronger']:.4g} with "
            f"{settings_words(choice['stronger'])}; {choice['seconds']:.1f} s)"
        )
    refit = params.get("refit") or {}
    if refit.get("used"):
        words += (
            f"; refit on training + validation rows ({refit['rows']} rows, "
            f"{refit['epochs']} epochs: {refit['rule']}, {refit['seconds']:.1f} s)"
        )
    return words


def _member_table(manifest: Manifest) -> str:
    """Members with their validation scores, and out-of-bag ones for resampling strategies."""
    metric = "accuracy" if manifest.task == "classification" else "rmse"
    header = ["member", "epoch", "of", "stopped", "cycle", "rows", "val_loss", f"val_{metric}"]
    header.append("seconds")
    oob = any(info.out_of_sample is not None for info in manifest.members)
    if oob:
        header += ["oob_rows", f"oob_{metric}"]
    rows = []
    for info in manifest.members:
        budget = info.budget or {}
        row = [
            info.id,
            info.epoch,
            budget.get("epochs_run"),
            budget.get("stopped"),
            info.cycle,
            info.rows.get("n_rows"),
            info.val_metrics["val_loss"],
            info.val_metrics["val_metric"],
            info.val_metrics["train_seconds"],
        ]
        if oob:
            scores = info.out_of_sample
            row += [None, None] if scores is None else [scores.n_rows, scores.metrics[metric]]
        rows.append(row)
    table = format_table(header, rows)
    if (manifest.strategy.params.get("refit") or {}).get("used"):
        table += (
            "\n\nepoch, of, stopped, val_*, oob_*: the members trained on the training rows; "
            "rows: the served members, refit on training + validation rows; seconds: both runs"
        )
    return table


def _combiner_table(manifest: Manifest) -> str:
    """Every combiner's test metrics, then the single-member baselines'."""
    keys = list(next(iter(manifest.combiners.values())).test_metrics)
    rows = [
        (
            name + (" (default)" if name == manifest.default_combiner else ""),
            *[info.test_metrics.get(key) for key in keys],
        )
        for name, info in manifest.combiners.items()
    ]
    rows += [(name, *[m.get(key) for key in keys]) for name, m in manifest.baselines.items()]
    return format_table(["test split", *keys], rows)


def _out_of_sample_line(scores: EnsembleOutOfSampleInfo) -> str:
    """The out-of-bag ensemble score in one line."""
    metrics = ", ".join(f"{key} {value:.4g}" for key, value in scores.metrics.items())
    return (
        f"out-of-bag ensemble ({scores.n_rows} training rows, each scored by the mean of the "
        f"members that did not train on it, {scores.members_per_row:.3g} on average; "
        f"{scores.n_rows_unscored} rows every member trained on left out): {metrics}"
    )


def _choice_table(choice: DefaultChoiceInfo) -> str:
    """The paired comparison with mean behind the default, and the reason."""
    rows = [
        (
            name,
            info.mean_loss,
            info.mean_difference,
            info.standard_error,
            info.effective_members,
            info.excluded
            or (f"beats mean by > {choice.standard_errors:.2f} se" if info.beats_mean else None),
        )
        for name, info in choice.comparisons.items()
    ]
    table = format_table(
        [
            f"held out ({choice.n_rows} rows)",
            choice.loss,
            "minus mean",
            "std error",
            "eff. members",
            "note",
        ],
        rows,
    )
    return f"{table}\n\ndefault: {choice.reason}"


def main(argv: list[str] | None = None) -> int:
    """Parse options, train, publish and print the summary; returns the exit status."""
    args = build_parser().parse_args(argv)

    def train() -> int:
        from ensembles.training.pipeline import run_training

        request = request_from_args(args)
        report = run_training(request)
        try:
            print(summary(report))
        except KeyboardInterrupt as exc:
            manifest = report.manifest
            exc.add_note(f"{manifest.name} version {manifest.version} was published")
            raise
        return 0

    return run_command(train, writes=[args.store], interrupted="interrupted; nothing was published")


if __name__ == "__main__":
    sys.exit(main())
