"""Weight averaging: the parameter mean by hand, batch-norm statistics, the greedy soup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensembles.errors import ConfigError
from ensembles.training.config import TrainConfig
from ensembles.training.network import MemberNetwork
from ensembles.training.weight_averaging import (
    average_weights,
    check_weight_averaging,
    greedy_soup,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(50, 4)).astype(np.float32)


def network(seed: int, batch_norm: bool = False) -> MemberNetwork:
    torch.manual_seed(seed)
    config = TrainConfig(hidden_sizes=(6,), dropout=0.0, batch_norm=batch_norm)
    return MemberNetwork(4, 3, "classification", config, X.mean(0), X.std(0))


def test_average_equals_the_hand_computed_parameter_mean() -> None:
    members = [network(seed) for seed in range(3)]
    averaged = average_weights(members, X)
    for name, value in averaged.named_parameters():
        by_hand = sum(dict(m.named_parameters())[name].detach() for m in members) / 3
        torch.testing.assert_close(value.detach(), by_hand)
    torch.testing.assert_close(averaged.input_mean, members[0].input_mean)
    assert all(not m.training for m in [averaged])


def test_batch_norm_statistics_are_recomputed_on_training_rows() -> None:
    members = [network(seed, batch_norm=True) for seed in range(2)]
    averaged = average_weights(members, X)
    batch_norm = averaged.body[1]
    hidden = averaged.body[0](averaged.standardize(torch.from_numpy(X))).detach()
    torch.testing.assert_close(batch_norm.running_mean, hidden.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        batch_norm.running_var, hidden.var(0, unbiased=True), atol=1e-5, rtol=1e-4
    )
    assert batch_norm.momentum == members[0].body[1].momentum  # restored by update_bn


def test_greedy_soup_adds_members_only_when_validation_improves() -> None:
    members = [network(seed) for seed in range(4)]
    losses = {id(m): float(i) for i, m in enumerate(members)}

    def loss(candidate: MemberNetwork) -> float:
        if id(candidate) in losses:
            return losses[id(candidate)]
        # any soup beats every single member only while it holds members 0 and 2
        first = candidate.head.weight.detach()
        soup_02 = (members[0].head.weight + members[2].head.weight).detach() / 2
        return -1.0 if torch.allclose(first, soup_02) else 5.0

    _, chosen = greedy_soup(members, X, loss)
    assert chosen == [0, 2]


@pytest.mark.parametrize("strategy", ["repeat", "bagging", "kfold", "subsample"])
def test_independent_members_are_refused_with_the_reason(strategy: str) -> None:
    with pytest.raises(ConfigError, match=f"refuses the members of '{strategy}'.*loss basin"):
        check_weight_averaging(strategy, force=False)
    check_weight_averaging(strategy, force=True)
    check_weight_averaging("snapshot", force=False)
