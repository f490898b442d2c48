"""The default keeps the ensemble: mean unless a learned combiner beats it beyond noise.

Real small ensembles trained by the pipeline. The seeds are ones where the former rule (the
bare minimum of held-out loss) published a one-member blend or hard votes; each test first
asserts that this is still what the lowest loss would pick. The bar itself is checked on
constructed per-row losses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ensembles.default_choice import (
    choose_default,
    effective_members,
    mean_mistakes,
    ranking_loss,
    required_standard_errors,
)
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions
from ensembles.manifest import CombinerInfo, DefaultChoiceInfo, Manifest
from ensembles.store import ModelStore
from ensembles.training.pipeline import TrainRequest, train_ensemble
from tests.conftest import tiny_request

ONE_MEMBER = "1.00 effective members (fewer than 2) would not keep the ensemble"
VOTES = "hard votes are not a proper probability forecast"
NONE_ELIGIBLE = "no combiner besides mean is eligible"


@pytest.fixture(scope="module")
def five_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV of the digits 0-4 with a ``label`` column (901 rows), as a user would bring."""
    digits = load_digits()
    keep = digits.target < 5
    header = ",".join([*(f"p{i}" for i in range(64)), "label"])
    rows = np.column_stack([digits.data[keep], digits.target[keep]]).astype(int)
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")
    return path


@pytest.fixture(scope="module")
def wine_repeat(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    """Five tiny repeat members on wine, published with every combiner."""
    request = tiny_request(
        tmp_path_factory.mktemp("wine"), dataset="wine", strategy="repeat", members=5, seed=6
    )
    manifest = train_ensemble(request)
    return manifest, ModelStore(request.store).path("wine", manifest.version)


def csv_request(tmp_path: Path, csv: Path, **changes: object) -> TrainRequest:
    """Five tiny members on the CSV."""
    return tiny_request(tmp_path, dataset=None, csv=csv, target="label", members=5, **changes)


def lowest_loss(manifest: Manifest) -> str:
    """What the former rule published: the lowest held-out loss."""
    comparisons = manifest.default_choice.comparisons
    return min(comparisons, key=lambda name: comparisons[name].mean_loss)


def test_a_one_member_blend_is_never_the_default(tmp_path: Path, five_digits: Path) -> None:
    # snapshot, the default strategy: caruana put all its weight on the last cycle
    manifest = train_ensemble(
        csv_request(tmp_path, five_digits, strategy="snapshot", epochs=10, seed=1)
    )
    choice = manifest.default_choice
    assert lowest_loss(manifest) in {"blend", "caruana"}
    for name in ("blend", "caruana", "weight_average"):
        assert choice.comparisons[name].beats_mean
        assert choice.comparisons[name].excluded == ONE_MEMBER
    assert manifest.combiners["caruana"].effective_members == pytest.approx(1.0)
    default = manifest.default_combiner
    assert choice.comparisons[default].effective_members >= 2
    assert choice.comparisons[default].excluded is None
    assert not choice.forced and choice.loss == "nll"


def test_hard_votes_are_never_the_default() -> None:
    """Votes far ahead of mean on the compared rows (as five tiny wine members' were) stay
    out: their shares are no proper probability forecast."""
    reference, better = losses_beating_mean_by(6.0)
    results = {
        "mean": learned(),
        "vote": CombinerInfo(kind="vote", state={}, fitted_on={}, effective_members=5.0),
    }
    name, choice = choose_default(results, {"mean": reference, "vote": better}, "nll", 5)
    assert name == "mean"
    assert choice.comparisons["vote"].beats_mean
    assert choice.comparisons["vote"].excluded == VOTES


def test_mean_stays_the_default_when_no_other_combiner_is_eligible(
    tmp_path: Path, five_digits: Path
) -> None:
    request = csv_request(
        tmp_path,
        five_digits,
        strategy="snapshot",
        epochs=10,
        seed=1,
        combiners=("mean", "vote", "caruana"),
    )
    manifest = train_ensemble(request)
    assert manifest.default_combiner == "mean"
    assert manifest.default_choice.reason == NONE_ELIGIBLE
    assert manifest.default_choice.comparisons["mean"].mean_difference == 0


def test_a_learned_combiner_that_beats_mean_beyond_noise_is_the_default(
    tmp_path: Path, five_digits: Path
) -> None:
    # four-epoch members are far too unsure: stacking sharpens them on held-out rows
    manifest = train_ensemble(csv_request(tmp_path, five_digits, strategy="repeat"))
    choice = manifest.default_choice
    stack = choice.comparisons["stack"]
    assert manifest.default_combiner == "stack"
    # blend, caruana and stack are eligible: the bar is shared by three
    assert choice.standard_errors == pytest.approx(required_standard_errors(3))
    assert stack.mean_difference < -3 * stack.standard_error
    assert choice.reason == (
        f"stack has a lower held-out nll than mean by {-stack.mean_difference:.4g} per row, "
        f"more than {choice.standard_errors:.2f} standard errors ({stack.standard_error:.4g} "
        "each)"
    )


def learned(effective: float = 5.0) -> CombinerInfo:
    return CombinerInfo(kind="blend", state={}, fitted_on={}, effective_members=effective)


def losses_beating_mean_by(z: float, n_rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Mean's per-row losses and a combiner's, lower by exactly ``z`` standard errors."""
    rng = np.random.default_rng(0)
    reference = rng.exponential(size=n_rows)
    noise = rng.normal(size=n_rows)
    noise = (noise - noise.mean()) / noise.std(ddof=1)  # the differences' std is exactly 1
    return reference, reference + noise - z / np.sqrt(n_rows)


@pytest.mark.parametrize(
    ("z", "n_eligible", "default"),
    [
        (1.5, 1, "mean"),  # beyond one standard error, short of the one-sided 5% bar (1.64)
        (1.8, 1, "c0"),  # clears 1.64, not the 1.96 of two (were the one-member one counted)
        (2.0, 3, "mean"),  # three eligible combiners share the 5%: the bar is 2.13
        (2.2, 3, "c0"),  # clears 2.13, not the 2.24 of four (were mean or one_member counted)
    ],
)
def test_the_bar_is_a_one_sided_5_percent_test_shared_by_the_eligible_combiners(
    z: float, n_eligible: int, default: str
) -> None:
    reference, better = losses_beating_mean_by(z)
    results = {"mean": learned(), **{f"c{k}": learned() for k in range(n_eligible)}}
    results["one_member"] = learned(effective=1.0)  # not eligible: it does not raise the bar
    losses = {"mean": reference, "c0": better, "one_member": better - 1.0}
    losses |= {f"c{k}": reference + 0.01 for k in range(1, n_eligible)}  # worse than mean
    name, choice = choose_default(results, losses, "nll", n_members=5)
    assert name == default
    assert choice.standard_errors == pytest.approx(required_standard_errors(n_eligible))
    assert choice.comparisons["c0"].mean_difference == pytest.approx(-z / np.sqrt(400))
    assert choice.comparisons["c0"].beats_mean == (default == "c0")
    assert choice.comparisons["one_member"].beats_mean  # far better, and still excluded
    if default == "mean":
        assert choice.reason == (
            f"no eligible combiner has a lower held-out nll than mean by more than "
            f"{choice.standard_errors:.2f} standard errors (a one-sided 5% test shared by "
            f"{n_eligible} eligible combiner{'s' if n_eligible > 1 else ''})"
        )
    else:
        assert choice.reason == (
            f"c0 has a lower held-out nll than mean by {z / 20:.4g} per row, more than "
            f"{choice.standard_errors:.2f} standard errors (0.05 each)"
        )


@pytest.mark.parametrize(("mistakes", "default"), [(0, "mean"), (1, "c0"), (None, "c0")])
def test_mean_stays_when_it_classifies_every_compared_row_right(
    mistakes: int | None, default: str
) -> None:
    # Four standard errors better, as a stack sharpening error-free rows is (breast cancer
    # bagging, 114 rows: test NLL +0.066 against mean)
    reference, better = losses_beating_mean_by(4.0)
    results = {"mean": learned(), "c0": learned()}
    name, choice = choose_default(
        results, {"mean": reference, "c0": better}, "nll", 5, mistakes=mistakes
    )
    assert name == default
    assert choice.comparisons["c0"].beats_mean  # recorded as it is
    assert choice.mean_mistakes == mistakes
    if default == "mean":
        assert choice.reason == (
            "mean classifies all 400 compared rows right: any sharper combiner would score "
            "better on them, and none of them shows what sharpening costs when wrong"
        )


def test_the_mistakes_of_mean_are_counted_on_the_plain_member_mean() -> None:
    members = np.array(
        [
            [[0.9, 0.1], [0.4, 0.6], [0.45, 0.55]],
            [[0.8, 0.2], [0.45, 0.55], [0.45, 0.55]],
            [[0.4, 0.6], [0.95, 0.05], [0.45, 0.55]],
        ]
    )  # mean: [0.70, 0.30], [0.60, 0.40], [0.45, 0.55] -> classes 0, 0, 1
    split = SplitPredictions(np.zeros((3, 1)), np.array([0, 1, 0]), members)
    # the members err 1, 1 and 3 times and their majority vote once (row 2); their mean
    # probabilities err on rows 1 and 2
    assert mean_mistakes(split) == 2
    regression = SplitPredictions(np.zeros((3, 1)), np.zeros((3, 1)), members[..., :1])
    assert mean_mistakes(regression) is None


def test_the_bar_is_the_normal_quantile_of_the_shared_level() -> None:
    assert required_standard_errors(1) == pytest.approx(1.6449, abs=1e-4)
    assert required_standard_errors(3) == pytest.approx(2.1280, abs=1e-4)
    assert required_standard_errors(0) == required_standard_errors(1)


def test_a_choice_recorded_before_the_bar_reads_one_standard_error() -> None:
    recorded = {"loss": "nll", "n_rows": 100, "forced": False, "reason": "older wording"}
    choice = DefaultChoiceInfo.model_validate(recorded)
    assert choice.standard_errors == 1.0
    assert choice.mean_mistakes is None


def test_a_named_default_is_kept_on_rows_mean_classifies_without_a_mistake() -> None:
    reference, better = losses_beating_mean_by(4.0)
    results = {"mean": learned(), "c0": learned()}
    losses = {"mean": reference, "c0": better}
    name, choice = choose_default(results, losses, "nll", 5, override="c0", mistakes=0)
    assert name == "c0" and choice.forced and choice.mean_mistakes == 0


def test_the_paired_comparison_is_computed_row_by_row(wine_repeat: tuple[Manifest, Path]) -> None:
    manifest, folder = wine_repeat
    validation = HeldoutPredictions.load(folder / HELDOUT_FILE).validation
    rows = np.arange(len(validation.y))
    # neither mean nor vote learns anything, so cross-fitting leaves their outputs as they are
    mean = validation.member_preds.mean(axis=0)[rows, validation.y]
    votes = (validation.member_preds.argmax(axis=2) == validation.y).mean(axis=0)
    differences = -np.log(np.clip(votes, 1e-15, None)) + np.log(mean)
    vote = manifest.default_choice.comparisons["vote"]
    assert manifest.default_choice.n_rows == len(rows)
    wrong = validation.member_preds.mean(axis=0).argmax(axis=1) != validation.y
    assert manifest.default_choice.mean_mistakes == wrong.sum()
    assert vote.mean_loss == pytest.approx(-np.mean(np.log(np.clip(votes, 1e-15, None))))
    assert vote.mean_difference == pytest.approx(differences.mean(), rel=1e-9)
    expected_se = differences.std(ddof=1) / np.sqrt(len(rows))
    assert vote.standard_error == pytest.approx(expected_se, rel=1e-9)
    weights = np.asarray(manifest.combiners["blend"].state["fitted"]["weights"])
    assert manifest.combiners["blend"].effective_members == pytest.approx(
        1 / np.sum((weights / weights.sum()) ** 2), rel=1e-12
    )


@pytest.mark.parametrize(
    ("gaussian_head", "loss"), [(False, "squared_error"), (True, "gaussian_nll")]
)
def test_regression_is_ranked_by_squared_error_without_gaussian_heads(
    tmp_path: Path, gaussian_head: bool, loss: str
) -> None:
    config = {"gaussian_head": gaussian_head}
    request = tiny_request(tmp_path, dataset="diabetes", strategy="repeat", config=config)
    manifest = train_ensemble(request)
    folder = ModelStore(request.store).path("diabetes", manifest.version)
    validation = HeldoutPredictions.load(folder / HELDOUT_FILE).validation
    assert manifest.default_choice.loss == ranking_loss(validation) == loss
    if not gaussian_head:  # mean's cross-fitted output is the plain mean: its MSE by hand
        squared = (validation.member_preds.mean(axis=0) - validation.y) ** 2
        mean = manifest.default_choice.comparisons["mean"]
        assert mean.mean_loss == pytest.approx(squared.mean(), rel=1e-9)


@pytest.mark.parametrize(
    ("method", "excluded"),
    [
        ("uniform", ONE_MEMBER),
        ("greedy", "its members were chosen on these rows, so its loss on them is optimistic"),
    ],
    ids=["uniform", "greedy"],
)
def test_a_weight_average_is_one_network_and_never_the_automatic_default(
    tmp_path: Path, method: str, excluded: str
) -> None:
    request = tiny_request(
        tmp_path, dataset="wine", strategy="snapshot", epochs=6, weight_averaging=method
    )
    manifest = train_ensemble(request)
    assert manifest.combiners["weight_average"].effective_members == 1.0
    assert manifest.default_choice.comparisons["weight_average"].excluded == excluded
    assert manifest.default_combiner != "weight_average"


def test_a_named_default_is_kept_and_the_comparison_still_recorded(tmp_path: Path) -> None:
    request = tiny_request(tmp_path, dataset="wine", strategy="repeat", default_combiner="vote")
    manifest = train_ensemble(request)
    assert manifest.default_combiner == "vote"
    choice = manifest.default_choice
    assert choice.forced and choice.reason == "vote was named by --default-combiner"
    assert set(choice.comparisons) == set(manifest.combiners)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [(None, 4.0), ([1, 1, 1, 1], 4.0), ([0, 0, 3, 0], 1.0), ([1, 1, 0, 0], 2.0)],
)
def test_effective_members(weights: list[float] | None, expected: float) -> None:
    found = effective_members(None if weights is None else np.array(weights, float), 4)
    assert found == pytest.approx(expected, rel=1e-12)


def test_a_combiner_just_under_two_members_is_not_shown_as_two() -> None:
    """1.9998 effective members is excluded; the note must not print it as 2.00."""
    from ensembles.default_choice import _exclusion

    info = CombinerInfo(kind="blend", state={}, fitted_on={}, effective_members=1.9998)
    assert _exclusion(info, 1.9998, 2) == (
        "1.99 effective members (fewer than 2) would not keep the ensemble"
    )
