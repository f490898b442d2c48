"""The manifest: the schema of ``manifest.json``, the single source of truth of a version."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ensembles import defaults
from ensembles.errors import IntegrityError
from ensembles.tabular import TabularSpec

#: 2: ``manifest.sha256`` beside the manifest and stored test outputs (``test_outputs.npz``)
#: instead of a digest of them; versions of schema 1 are refused with advice.
SCHEMA_VERSION = 2
Task = Literal["classification", "regression"]
Strategy = Literal["bagging", "kfold", "subsample", "repeat", "horizontal", "snapshot"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
#: Strategies whose members are checkpoints of one training run.
ONE_RUN_STRATEGIES = frozenset({"horizontal", "snapshot"})
#: The per-row loss the default choice compares: log loss, Gaussian NLL (Gaussian-head
#: regression members), squared error (other regression members; RMSE ranks the same).
RankingLoss = Literal["nll", "gaussian_nll", "squared_error"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Model):
    """The one input tensor every member takes: float32, ``(batch, n_features)``.

    Raw features, or for a table the encoded columns of ``Manifest.preprocessing``.
    """

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


class OutOfSampleInfo(_Model):
    """Scores on the training rows a member did not train on (out-of-bag / out-of-fold)."""

    n_rows: int = Field(ge=1, description="training rows scored")
    metrics: dict[str, float]


class EnsembleOutOfSampleInfo(OutOfSampleInfo):
    """The out-of-bag ensemble score, as scikit-learn's ``oob_score``.

    Each training row is scored by the mean of the members that did not train on it;
    rows every member trained on are left out (``n_rows_unscored``).
    """

    n_rows_unscored: int = Field(ge=0)
    members_per_row: float = Field(description="mean count of members scoring a row")


class MemberInfo(_Model):
    """One trained network of the ensemble."""

    id: str
    file: str
    seed: int
    rows: dict[str, Any] = Field(
        description="the rule that regenerates the rows it trained on, drawn from the "
        '"of" rows: the training split, or training + validation after a refit'
    )
    epoch: int | None = None
    cycle: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    val_metrics: dict[str, float] = Field(default_factory=dict)
    budget: dict[str, Any] | None = Field(
        default=None,
        description="the training budget: its rule (data or epochs), patience, cap, the epochs "
        "and steps run, the best epoch kept and why training stopped",
    )
    out_of_sample: OutOfSampleInfo | None = Field(
        default=None, description="bagging, kfold, subsample: scores on its unseen training rows"
    )


#: The kind (and name) of the weight-averaged model's entry in ``combiners``: a graph, not a
#: rule on member outputs.
WEIGHT_AVERAGE = "weight_average"


class CombinerInfo(_Model):
    """A fitted combiner: its JSON state, where it learned, and how it scored."""

    kind: str
    state: dict[str, Any]
    fitted_on: dict[str, Any]
    test_metrics: dict[str, float] = Field(default_factory=dict)
    heldout_metrics: dict[str, float] = Field(default_factory=dict)
    effective_members: float | None = Field(
        default=None, description="1 / sum of squared member weights; 1 for one averaged network"
    )
    variance_scale: float | None = Field(
        default=None,
        gt=0,
        description="regression: the factor the served predictive variance is calibrated by, "
        "fitted on the fit rows (maximum-likelihood Gaussian scale of the errors)",
    )


class ComparisonInfo(_Model):
    """One combiner against ``mean`` on the fit rows, paired row by row.

    Every row is scored by the combiner fitted on the other cross-fitting half, so both
    losses of a row are held out; ``mean_difference`` is the mean of (this combiner's loss
    minus mean's loss) over the rows, negative when it is better.
    """

    mean_loss: float
    mean_difference: float
    standard_error: float = Field(ge=0, description="std of the row differences / sqrt(n_rows)")
    beats_mean: bool = Field(
        description="mean_difference < -standard_errors * standard_error (the choice's "
        "bar), beyond rounding"
    )
    effective_members: float
    excluded: str | None = Field(description="why it can never be the default; None if it can")


class DefaultChoiceInfo(_Model):
    """Why the default combiner is the default: the comparison behind the choice."""

    loss: RankingLoss
    n_rows: int = Field(ge=1, description="fit rows compared (two-fold cross-fitted)")
    forced: bool = Field(description="named by --default-combiner")
    reason: str
    standard_errors: float = Field(
        default=1.0,
        gt=0,
        description="the bar of the automatic rule, in standard errors a combiner must beat "
        "mean by (ensembles.default_choice.required_standard_errors: a one-sided test at "
        "FAMILY_ERROR shared by the eligible combiners); recorded with a named default too; "
        "1 in versions published before that rule",
    )
    mean_mistakes: int | None = Field(
        default=None,
        ge=0,
        description="classification: compared rows mean classifies wrongly; with none, "
        "mean stays the default (None for regression and in versions published before)",
    )
    comparisons: dict[str, ComparisonInfo] = Field(default_factory=dict)


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
    preprocessing: TabularSpec | None = Field(
        default=None,
        description="tables: the column types and the encoding of raw columns into the "
        "input (applied by ensembles.tabular, in training and serving alike)",
    )
    output: OutputSpec
    strategy: StrategyInfo
    members: list[MemberInfo]
    files: dict[str, str] = Field(description="relative path -> sha256 of every file but this one")

    @field_validator("files")
    @classmethod
    def _paths_inside_the_version(cls, files: dict[str, str]) -> dict[str, str]:
        """Every listed path is a plain relative POSIX path inside the version folder."""
        for path in files:
            parts = path.split("/")
            if not path or path.startswith("/") or "\\" in path or {"", ".", ".."} & set(parts):
                raise ValueError(f"{path!r} is not a relative path inside the version folder")
        return files

    combiners: dict[str, CombinerInfo] = Field(default_factory=dict)
    default_combiner: str
    default_choice: DefaultChoiceInfo | None = None
    baselines: dict[str, dict[str, float]] = Field(default_factory=dict)
    out_of_sample: EnsembleOutOfSampleInfo | None = Field(
        default=None, description="bagging, kfold, subsample: the out-of-bag ensemble score"
    )
    split: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_differ(self) -> Manifest:
        """Each raw feature has its own name: ``/v1`` records are matched by name.

        A table's encoded names (``column=level``, ``column:missing``) label the members'
        input only, and records are matched on its columns, so only those must differ.
        """
        if self.preprocessing is None:
            names = self.input.feature_names
            where = "feature names"
        else:
            names = self.preprocessing.column_names
            where = "column names"
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"{where} must differ; {', '.join(map(repr, twice))} repeat")
        return self

    @model_validator(mode="after")
    def _one_label_per_output(self) -> Manifest:
        """``classes`` names every output once (the label served for each class index)."""
        if self.classes is not None:
            if self.task != "classification":
                raise ValueError("classes are for classification; this task is regression")
            if len(self.classes) != self.output.n_outputs:
                raise ValueError(
                    f"classes has {len(self.classes)} labels for {self.output.n_outputs} "
                    "outputs; it needs one per output"
                )
            if len(set(self.classes)) != len(self.classes):
                raise ValueError("class labels must differ")
        return self

    @property
    def interval_level(self) -> float:
        """The regression interval level the version was scored at (and is served at)."""
        return float(self.training.get("interval_level", defaults.INTERVAL_LEVEL))

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
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise IntegrityError(f"{source} is not valid JSON: {exc}") from exc
        found = raw.get("schema_version") if isinstance(raw, dict) else None
        if type(found) is int and found != SCHEMA_VERSION:
            advice = (
                "train the ensemble again to publish it in this schema"
                if found < SCHEMA_VERSION
                else "upgrade this release to read it"
            )
            raise IntegrityError(
                f"{source} has schema version {found}; this release reads version "
                f"{SCHEMA_VERSION}: {advice}"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            raise IntegrityError(f"{source} is invalid at '{where}': {first['msg']}") from exc
