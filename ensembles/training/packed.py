"""The packed engine: every independent member trained at once, as one batched network.

Small MLPs on a CPU spend a step mostly on per-operation and per-optimizer overhead, so K
members cost little more than one when their weights are stacked ``(K, in, out)`` and one
optimizer steps them all (the layout of TabM's packed layers, Gorishniy et al. 2025).
Each member keeps everything that makes it a member: its own seed and initialisation (its
network is built as the loop engine builds it, then packed), its own rows (every step it
draws its mini-batch from its own permutation of its own rows: bootstrap, fold or
subsample), its own standardization and imputation, its own dropout masks and batch-norm
statistics, and its own early stopping: a member that stops keeps its best weights and
leaves the pack (its slices, and its optimizer state, are cut out), so the members still
learning no longer pay for it. Members are unpacked into
ordinary :class:`~ensembles.training.network.MemberNetwork` states, so export, combiners
and serving do not know which engine trained them.

It runs on one torch thread, as each member of the loop engine does: two threads made a
32-member digits run 1.5x faster on an idle machine but small data 10x slower while the
other core was busy (every batched operation waits for both threads).

Deterministic from the plans' seeds on a given machine, but not bit-equal to the loop
engine: without dropout the curves agree to four decimals (same initialisation, same
batch order), but dropout masks come from one shared generator and at a rate rounded to
1/256 (:func:`_dropout`), and batched products sum in another order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ensembles.training.budget import Budget
from ensembles.training.callbacks import EarlyStopping
from ensembles.training.config import TrainConfig
from ensembles.training.loop import (
    FitResult,
    batch_starts,
    finish_metric,
    make_optimizer,
    objective_is_plain,
    objective_rows,
    row_losses,
    training_tensors,
)
from ensembles.training.members import (
    TrainedMember,
    TrainingData,
    budget_record,
    build_network,
    check_converged,
    member_budget,
    numpy_state,
    single_thread,
)
from ensembles.training.network import LOG_VARIANCE_RANGE, MemberNetwork
from ensembles.training.plans import MemberPlan, training_rows

#: ``random_``'s bounds for uniform 64-bit words: every bit of every byte uniform (the
#: upper bound is exclusive, so one value in 2**64 is never drawn).
_INT64_RANGE = (-(2**63), 2**63 - 1)


def packing_problem(plans: list[MemberPlan], config: TrainConfig, n_rows: int) -> str | None:
    """Why ``plans``, drawing their rows from ``n_rows``, cannot train packed (None when
    they can).

    Members are packed when every one trains with the same settings (one layout, and one
    optimizer, rate and batch size for the one optimizer that steps them all) and the same
    number of optimizer steps per epoch: the packed step moves every member's weights, so a
    member whose rows end a batch earlier would take steps on batches without its rows
    (Adam moves weights on a zero gradient), which the loop never does.
    """
    if len(plans) < 2:
        return "a single member gains nothing from packing"
    settings = {repr(sorted(config.with_overrides(p.settings).to_dict().items())) for p in plans}
    if len(settings) > 1:
        differing = sorted({key for plan in plans for key in plan.settings})
        return f"the members' settings differ ({', '.join(differing)})"
    sizes = [len(training_rows(plan.rows, n_rows)) for plan in plans]
    steps = {len(batch_starts(size, config.batch_size, config.batch_norm)) for size in sizes}
    if len(steps) > 1:
        return (
            f"the members' row counts give different steps per epoch ({min(steps)} and "
            f"{max(steps)} at batch size {config.batch_size})"
        )
    return None


class PackedNetwork(nn.Module):
    """K member networks of one layout, as batched weights.

    Parameters
    ----------
    networks : list of MemberNetwork
        Freshly built members (their initial weights and statistics are copied).
    """

    def __init__(self, networks: list[MemberNetwork]) -> None:
        super().__init__()
        first = networks[0]
        self.n_members = len(networks)
        self.has_batch_norm = first.has_batch_norm
        self.gaussian, self.n_outputs = first.gaussian, first.n_outputs
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.norms = nn.ModuleList()
        #: (kind, index) of every layer in order: linear, norm, dropout (its threshold), module
        self._plan: list[tuple[str, int]] = []
        modules = [*first.body, first.head]
        for position, module in enumerate(modules):
            stacked = [[*network.body, network.head][position] for network in networks]
            if isinstance(module, nn.Linear):
                weight = torch.stack([m.weight.detach().T for m in stacked])  # (K, in, out)
                bias = torch.stack([m.bias.detach()[None, :] for m in stacked])  # (K, 1, out)
                self.weights.append(nn.Parameter(weight.clone()))
                self.biases.append(nn.Parameter(bias.clone()))
                self._plan.append(("linear", len(self.weights) - 1))
            elif isinstance(module, nn.BatchNorm1d):
                norm = nn.BatchNorm1d(module.num_features * self.n_members)
                with torch.no_grad():
                    norm.weight.copy_(torch.cat([m.weight for m in stacked]))
                    norm.bias.copy_(torch.cat([m.bias for m in stacked]))
                self.norms.append(norm)
                self._plan.append(("norm", len(self.norms) - 1))
            elif isinstance(module, nn.Dropout):  # (MemberNetwork adds it only when p > 0)
                self._plan.append(("dropout", _dropout_threshold(module.p)))
            else:  # an activation: elementwise, so independent per member
                self.add_module(f"layer{position}", module)
                self._plan.append(("module", position))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Training outputs ``(K, batch, outputs)`` of standardized inputs ``(K, batch, F)``."""
        h = z
        for kind, index in self._plan:
            if kind == "linear":
                h = torch.baddbmm(self.biases[index], h, self.weights[index])
            elif kind == "dropout":
                h = _dropout(h, index) if self.training else h
            elif kind == "norm":
                members, rows, width = h.shape
                flat = h.transpose(0, 1).reshape(rows, members * width)
                h = self.norms[index](flat).reshape(rows, members, width).transpose(0, 1)
            else:
                h = getattr(self, f"layer{index}")(h)
        if not self.gaussian:
            return h
        mean, log_variance = h[..., : self.n_outputs], h[..., self.n_outputs :]
        return torch.cat([mean, log_variance.clamp(*LOG_VARIANCE_RANGE)], dim=-1)

    def keep(self, slots: list[int]) -> None:
        """Keep only the members in ``slots`` (new parameters: rebuild the optimizer)."""
        with torch.no_grad():
            for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
                self.weights[i] = nn.Parameter(weight.data[slots].clone())
                self.biases[i] = nn.Parameter(bias.data[slots].clone())
            for i, norm in enumerate(self.norms):
                kept = nn.BatchNorm1d(norm.num_features // self.n_members * len(slots))
                for name in ("weight", "bias", "running_mean", "running_var"):
                    value = getattr(norm, name).data
                    getattr(kept, name).data.copy_(_member_rows(value, slots, self.n_members))
                kept.num_batches_tracked.copy_(norm.num_batches_tracked)
                kept.train(norm.training)
                self.norms[i] = kept
        self.n_members = len(slots)

    def unpack(self, k: int, network: MemberNetwork) -> None:
        """Write member ``k``'s weights (and batch-norm statistics) into ``network``."""
        linears = [m for m in [*network.body, network.head] if isinstance(m, nn.Linear)]
        norms = [m for m in network.body if isinstance(m, nn.BatchNorm1d)]
        with torch.no_grad():
            for linear, weight, bias in zip(linears, self.weights, self.biases, strict=True):
                linear.weight.copy_(weight[k].T)
                linear.bias.copy_(bias[k, 0])
            for norm, packed in zip(norms, self.norms, strict=True):
                part = slice(k * norm.num_features, (k + 1) * norm.num_features)
                norm.weight.copy_(packed.weight[part])
                norm.bias.copy_(packed.bias[part])
                norm.running_mean.copy_(packed.running_mean[part])
                norm.running_var.copy_(packed.running_var[part])
                norm.num_batches_tracked.copy_(packed.num_batches_tracked)


def train_packed(
    plans: list[MemberPlan],
    data: TrainingData,
    config: TrainConfig,
    on_member_done: Callable[[], None] = lambda: None,
) -> list[TrainedMember]:
    """Train every member of ``plans`` at once (see the module docstring).

    Parameters
    ----------
    plans : list of MemberPlan
        Members that can be packed (:func:`packing_problem` is None).
    data : TrainingData
    config : TrainConfig
        With a numeric learning rate (resolved once per ensemble).
    on_member_done : callable
        Called once per member when it stops.

    Returns
    -------
    list of TrainedMember
        In plan order; ``seconds`` is the packed run's time shared equally.

    Raises
    ------
    ConfigError
        When a member diverges (its training loss becomes NaN or infinite), naming it.
    """
    start = time.perf_counter()
    run = config.with_overrides(plans[0].settings)
    n_train = len(data.y_train)
    rows = [training_rows(plan.rows, n_train) for plan in plans]
    budgets = [member_budget(run, len(member_rows)) for member_rows in rows]
    configs = [run.with_overrides({"epochs": b.max_epochs}) for b in budgets]
    with single_thread():
        networks = []
        for plan, member_rows, member_config in zip(plans, rows, configs, strict=True):
            torch.manual_seed(plan.seed)  # each member initialised as the loop engine does
            networks.append(build_network(data, member_config, member_rows))
        results = _fit_packed(networks, plans, rows, budgets, data, run)
    seconds = (time.perf_counter() - start) / len(plans)
    members = []
    for plan, network, member_config, budget, (result, best) in zip(
        plans, networks, configs, budgets, results, strict=True
    ):
        check_converged(result, plan.member_id)
        state = numpy_state(network)
        members.append(
            TrainedMember(
                plan,
                member_config,
                state,
                result.curves,
                best,
                seconds=seconds,
                budget=budget_record(budget, result, best),
            )
        )
        on_member_done()
    return members


def _fit_packed(
    networks: list[MemberNetwork],
    plans: list[MemberPlan],
    rows: list[np.ndarray],
    budgets: list[Budget],
    data: TrainingData,
    config: TrainConfig,
) -> list[tuple[FitResult, int]]:
    """The batched training loop; leaves each network holding its member's kept weights."""
    n_members = len(networks)
    first = networks[0]
    generators = [torch.Generator().manual_seed(plan.seed) for plan in plans]
    torch.manual_seed(plans[0].seed)
    train = [
        training_tensors(network, data.X_train[member_rows], data.y_train[member_rows])
        for network, member_rows in zip(networks, rows, strict=True)
    ]
    sizes = [len(x) for x, _ in train]
    n_rows = max(sizes)
    x_train = torch.stack([_padded(x, n_rows) for x, _ in train])  # (K, n_rows, F)
    t_train = torch.stack([_padded(t, n_rows) for _, t in train])
    every = torch.arange(n_members)[:, None]
    # (K, n_rows): the positions of each member's epoch that are its own rows; a member
    # with fewer rows wraps around to the start of its permutation for the batch's shape,
    # and the rows past its own count are masked out of its loss (a fold one row short)
    own = (torch.arange(n_rows) < torch.tensor(sizes)[:, None]).float()
    val = [training_tensors(network, data.X_val, data.y_val) for network in networks]
    x_val, t_val = torch.stack([x for x, _ in val]), torch.stack([t for _, t in val])
    packed = PackedNetwork(networks)
    optimizer = make_optimizer(packed, config, fused=True)
    parameters = list(packed.parameters())
    objective = _PackedObjective(networks, rows, data, config)
    starts = batch_starts(n_rows, config.batch_size, first.has_batch_norm)
    batches = [slice(begin, end) for begin, end in zip(starts, [*starts[1:], n_rows], strict=True)]
    weights = _row_weights(own, batches)
    stoppers = [
        EarlyStopping(b.patience, b.min_epochs) if b.patience is not None else None for b in budgets
    ]
    results = [FitResult() for _ in networks]
    members = list(range(n_members))  # the member in each packed slot
    for epoch in range(1, max(b.max_epochs for b in budgets) + 1):
        packed.train()
        # each member's own permutation of its own rows, gathered once: batches are slices
        orders = torch.stack(
            [
                torch.randperm(sizes[k], generator=generators[k])[torch.arange(n_rows) % sizes[k]]
                for k in members
            ]
        )
        epoch_inputs, epoch_targets = x_train[every, orders], t_train[every, orders]
        losses, metrics = torch.zeros(len(members)), torch.zeros(len(members))
        for batch, weight in zip(batches, weights, strict=True):
            inputs, targets = epoch_inputs[:, batch], epoch_targets[:, batch]
            if config.input_noise > 0:
                inputs = inputs + config.input_noise * torch.randn(inputs.shape)
            output = packed(inputs)
            terms = objective.terms(output, targets)
            for parameter in parameters:  # (the optimizer's zero_grad costs 3% of a step)
                parameter.grad = None
            # each member's gradient is its own loss's (the mean over its own rows)
            (terms * weight).sum().backward()
            if config.grad_clip is not None:
                _clip_per_member(packed, config.grad_clip)
            optimizer.step()
            with torch.no_grad():
                losses += (objective.reported(output, targets, terms) * own[:, batch]).sum(dim=1)
                metrics += objective.metric(output, targets, own[:, batch])
        val_output = _evaluate(packed, x_val)
        val_losses = objective.reported(val_output, t_val).mean(dim=1)
        val_metrics = objective.metric(val_output, t_val)
        kept = []
        for slot, k in enumerate(members):
            packed.unpack(slot, networks[k])
            log = {
                "epoch": epoch,
                "train_loss": float(losses[slot]) / sizes[k],
                "train_metric": finish_metric(networks[k], float(metrics[slot]), sizes[k]),
                "val_loss": float(val_losses[slot]),
                "val_metric": finish_metric(networks[k], float(val_metrics[slot]), len(data.y_val)),
                "learning_rate": float(optimizer.param_groups[0]["lr"]),
            }
            results[k].curves.append(log)
            results[k].epochs_run = epoch
            results[k].diverged = not math.isfinite(log["train_loss"])
            stopper = stoppers[k]
            stop = stopper is not None and stopper.on_epoch_end(epoch, networks[k], log)
            if not (results[k].diverged or stop or epoch >= budgets[k].max_epochs):
                kept.append(slot)
        if not kept:
            break
        if len(kept) < len(members):  # stopped members leave the pack: no work on them
            packed.keep(kept)
            optimizer = _compacted_optimizer(
                packed, optimizer, parameters, kept, len(members), config
            )
            parameters = list(packed.parameters())
            members = [members[slot] for slot in kept]
            x_train, t_train, own = x_train[kept], t_train[kept], own[kept]
            weights = _row_weights(own, batches)
            x_val, t_val = x_val[kept], t_val[kept]
            objective.keep(kept)
            every = torch.arange(len(members))[:, None]
    outcome = []
    for network, stopper, result in zip(networks, stoppers, results, strict=True):
        best = result.epochs_run
        if stopper is not None:
            stopper.on_train_end(network)
            best = stopper.best_epoch or best
        network.eval()
        outcome.append((result, best))
    return outcome


class _PackedObjective:
    """The loop engine's losses, on ``(K, batch, ...)`` outputs: per member, per row."""

    def __init__(
        self,
        networks: list[MemberNetwork],
        rows: list[np.ndarray],
        data: TrainingData,
        config: TrainConfig,
    ) -> None:
        first = networks[0]
        self.plain = objective_is_plain(first, config)
        self.row_losses = row_losses(first)
        # class weights come from each member's own rows; every other objective is shared
        self.per_member = config.class_weight == "balanced"
        self.objectives = [
            objective_rows(network, config, data.y_train[member_rows])
            for network, member_rows in zip(networks, rows, strict=True)
        ]
        self.classification = first.task == "classification"
        self.n_outputs = first.n_outputs
        self.target_scale = torch.stack([network.target_scale for network in networks])

    def keep(self, slots: list[int]) -> None:
        """Keep the objectives of the members in ``slots`` only."""
        self.objectives = [self.objectives[slot] for slot in slots]
        self.target_scale = self.target_scale[slots]

    def terms(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """What the optimizer minimizes, ``(K, batch)``."""
        if self.per_member:
            return torch.stack([f(output[k], targets[k]) for k, f in enumerate(self.objectives)])
        return self.objectives[0](output, targets)

    def reported(
        self, output: torch.Tensor, targets: torch.Tensor, terms: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The plain loss every curve reports, ``(K, batch)``."""
        if self.plain and terms is not None:
            return terms.detach()
        return self.row_losses(output, targets)

    def metric(
        self, output: torch.Tensor, targets: torch.Tensor, own: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per member: correct predictions, or summed squared error in target units (K,),
        over the rows ``own`` marks (every row when None)."""
        if self.classification:
            rows = (output.argmax(dim=-1) == targets).float()
        else:
            error = (output[..., : self.n_outputs] - targets) * self.target_scale[:, None, :]
            rows = (error**2).mean(dim=-1)
        return (rows if own is None else rows * own).sum(dim=1)


def _dropout_threshold(p: float) -> int:
    """``p`` in 256ths: the byte values below it drop a unit (0.2 -> 51, a rate of 0.1992).

    Any rate above 0 drops at least one value in 256 and keeps at least one.
    """
    return 0 if p == 0 else min(max(round(p * 256), 1), 255)


def _dropout(h: torch.Tensor, threshold: int) -> torch.Tensor:
    """Inverted dropout drawing one random byte per unit.

    ``torch.dropout`` draws a float per unit, which at K members is K times the random
    numbers of one and took a third of a packed step on digits; the price of bytes is a
    rate rounded to 1/256. The bytes are drawn eight at a time, as 64-bit integers over
    their whole range (a 64-bit draw costs about twice a byte's), and compared straight
    into a float mask (comparing into booleans and converting costs about seven times as
    much): a 5 x 64 x 128 layer's dropout takes about 40 us, against 128 us with one byte
    drawn per unit and a boolean mask.
    """
    words = torch.empty(-(-h.numel() // 8), dtype=torch.int64).random_(*_INT64_RANGE)
    units = words.view(torch.uint8)[: h.numel()].view(h.shape)
    keep = torch.ge(units, threshold, out=torch.empty(h.shape, dtype=h.dtype))
    return h * keep.mul_(256 / (256 - threshold))


def _member_rows(values: torch.Tensor, slots: list[int], n_members: int) -> torch.Tensor:
    """Members ``slots`` of a packed tensor: members first, or ``K * width`` in a row."""
    if values.dim() == 1:
        return values.reshape(n_members, -1)[slots].reshape(-1).clone()
    return values[slots].clone()


def _compacted_optimizer(
    packed: PackedNetwork,
    old: torch.optim.Optimizer,
    old_params: list[torch.Tensor],
    slots: list[int],
    n_members: int,
    config: TrainConfig,
) -> torch.optim.Optimizer:
    """A fresh optimizer over ``packed``'s new parameters holding ``old``'s state of the
    members kept: moments sliced like their parameters, step counts carried over."""
    optimizer = make_optimizer(packed, config, fused=True)
    for before, after in zip(old_params, packed.parameters(), strict=True):
        optimizer.state[after] = {
            key: _member_rows(value, slots, n_members)
            if torch.is_tensor(value) and value.shape == before.shape
            else (value.clone() if torch.is_tensor(value) else value)
            for key, value in old.state.get(before, {}).items()
        }
    return optimizer


def _row_weights(own: torch.Tensor, batches: list[slice]) -> list[torch.Tensor]:
    """Per batch, ``(K, batch)`` weights making each member's loss the mean over its own
    rows (0 on the wrapped ones), so that each member's gradient is its own loss's."""
    return [
        own[:, batch] / own[:, batch].sum(dim=1, keepdim=True).clamp(min=1) for batch in batches
    ]


def _padded(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """``rows`` extended to ``n_rows`` by repeating its first rows (never read: see above)."""
    return rows[torch.arange(n_rows) % len(rows)]


def _evaluate(packed: PackedNetwork, x_val: torch.Tensor) -> torch.Tensor:
    packed.eval()
    with torch.no_grad():
        return packed(x_val)


def _clip_per_member(packed: PackedNetwork, max_norm: float) -> None:
    """Clip each member's gradient norm on its own, as the loop engine clips one network's.

    Every packed tensor has the members first (weights ``(K, ...)``, batch-norm vectors
    ``K * width`` member after member), so ``reshape(K, -1)`` is one member per row.
    """
    grads = [
        p.grad.reshape(packed.n_members, -1) for p in packed.parameters() if p.grad is not None
    ]
    norms = torch.stack([g.pow(2).sum(dim=1) for g in grads]).sum(dim=0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale[:, None])
