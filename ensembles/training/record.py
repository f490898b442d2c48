"""The manifest of a trained version: what was trained, how, and how well."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from ensembles.data import Splits
from ensembles.export import output_spec
from ensembles.manifest import InputSpec, Manifest, MemberInfo, StrategyInfo
from ensembles.reproduction import WEIGHT_AVERAGE
from ensembles.training.combining import CombinedEnsemble
from ensembles.training.config import TrainConfig
from ensembles.training.members import TrainedMember
from ensembles.training.network import MemberNetwork
from ensembles.training.plans import training_rows

if TYPE_CHECKING:  # the pipeline imports this module
    from ensembles.training.pipeline import TrainRequest

#: Packages whose versions every manifest records (those installed).
RECORDED_PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "scikit-learn", "ensembles")


def version_manifest(
    request: TrainRequest,
    config: TrainConfig,
    version: int,
    splits: Splits,
    members: list[TrainedMember],
    served: list[TrainedMember],
    served_networks: list[MemberNetwork],
    params: dict[str, Any],
    combined: CombinedEnsemble,
    parity: list[float],
) -> Manifest:
    """The version's manifest.

    ``members`` trained on the training rows, and their curves, best epochs, budgets and
    validation scores describe the run; ``served`` are the members exported, with
    ``served_networks`` (the same ones, or their refit on training + validation rows: their
    rows and training seconds are recorded). ``parity`` is each exported member's largest
    difference from torch.
    """
    refit = served is not members
    n_rows = len(splits.train.y) + (len(splits.validation.y) if refit else 0)
    member_infos = []
    for member, server, difference, oob in zip(
        members, served, parity, combined.member_out_of_sample, strict=True
    ):
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
                    "of": "training + validation" if refit else "training",
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
        task=splits.train.task,
        classes=splits.train.classes,
        input=InputSpec(feature_names=splits.train.feature_names),
        preprocessing=splits.train.tabular,
        output=output_spec(served_networks[0]),
        strategy=StrategyInfo(name=request.strategy, params=params),
        members=member_infos,
        files={},
        combiners=combined.combiners,
        default_combiner=combined.default,
        default_choice=combined.choice,
        baselines=combined.baselines,
        out_of_sample=combined.ensemble_out_of_sample,
        split={**splits.record, "source": splits.train.source},
        training={
            "config": config.to_dict(),
            "calibrate": request.calibrate,
            "interval_level": request.interval_level,
            "weight_averaging": (
                request.weight_averaging if WEIGHT_AVERAGE in combined.combiners else None
            ),
        },
        library_versions=library_versions(),
    )


def library_versions() -> dict[str, str]:
    """Python's version and those of :data:`RECORDED_PACKAGES` that are installed."""
    versions = {"python": platform.python_version()}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
