"""The manifest: the schema of ``manifest.json``, the single source of truth of a version."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ensembles.errors import IntegrityError

#: 2: ``manifest.sha256`` beside the manifest and stored test outputs (``test_outputs.npz``)
#: instead of a digest of them; versions of schema 1 are refused with advice.
SCHEMA_VERSION = 2
Task = Literal["classification", "regression"]
Strategy = Literal["bagging", "kfold", "subsample", "repeat", "horizontal", "snapshot"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Model):
    """The one input tensor every member takes: raw features, float32, ``(batch, n_features)``."""

    name: str = "input"
    dtype: Literal["float32"] = "float32"
    feature_names: list[str]

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return len(self.feature_names)


class OutputSpec(_Model):
    """What every member returns.

    ``name`` is the ONNX output holding probabilities ``(batch, n_classes)`` or values
    ``(batch, n_targets)``; ``variance_name`` is the second output of Gaussian-head
    regression members (aleatoric variance, same shape), else None.
    """

    name: Literal["probabilities", "value"]
    n_outputs: int = Field(ge=1)
    variance_name: Literal["variance"] | None = None


class MemberInfo(_Model):
    """One trained network of the ensemble."""

    id: str
    file: str
    seed: int
    rows: dict[str, Any] = Field(description="the rule that regenerates the rows it trained on")
    epoch: int | None = None
    cycle: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    val_metrics: dict[str, float] = Field(default_factory=dict)


class CombinerInfo(_Model):
    """A fitted combiner: its JSON state, where it learned, and how it scored."""

    kind: str
    state: dict[str, Any]
    fitted_on: dict[str, Any]
    test_metrics: dict[str, float] = Field(default_factory=dict)
    heldout_metrics: dict[str, float] = Field(default_factory=dict)


class StrategyInfo(_Model):
    """How the members were produced."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Manifest(_Model):
    """Everything known about one published version of an ensemble."""

    schema_version: Literal[2] = SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    created: str
    task: Task
    classes: list[str] | None = None
    input: InputSpec
    output: OutputSpec
    strategy: StrategyInfo
    members: list[MemberInfo]
    files: dict[str, str] = Field(description="relative path -> sha256 of every file but this one")
    combiners: dict[str, CombinerInfo] = Field(default_factory=dict)
    default_combiner: str
    baselines: dict[str, dict[str, float]] = Field(default_factory=dict)
    split: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)

    @property
    def n_members(self) -> int:
        """Number of members."""
        return len(self.members)

    def to_json(self) -> str:
        """Serialize to indented JSON text."""
        return json.dumps(self.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "manifest.json") -> Manifest:
        """Parse and validate manifest text.

        Raises
        ------
        IntegrityError
            When the text is not JSON or does not follow the schema; the message names
            ``source`` and the first offending field.
        """
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise IntegrityError(f"{source} is not valid JSON: {exc}") from exc
        found = raw.get("schema_version") if isinstance(raw, dict) else None
        if found != SCHEMA_VERSION and isinstance(found, int):
            raise IntegrityError(
                f"{source} has schema version {found}; this release reads version "
                f"{SCHEMA_VERSION}: train the ensemble again to publish it in this schema"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            raise IntegrityError(f"{source} is invalid at '{where}': {first['msg']}") from exc
