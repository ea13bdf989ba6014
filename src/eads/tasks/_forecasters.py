"""The spatio-temporal suite's models framed as forecasters (:mod:`eads.tasks.spatiotemporal`).

Each is an :class:`eads.bench.forecasting.AbstractForecaster` (windows ``x (B, history, N, F)``
z-scored in, ``(B, horizon, N)`` in the target's z-units out, one training update), trained by
:func:`eads.bench.forecasting.train_forecaster`:

* **EADS** (:data:`EADS_HIDDEN` hidden nodes, the reference node on, trained by EC-Train):
  input nodes = the z-scored history window of all nodes and features, flattened,
  ``N * history * F``; output nodes = the horizon of all nodes in the target's z-units,
  ``N * horizon``. EC-Train minimises the clamped-output current error, a squared error; a
  missing target leaves its output node unclamped (no error current), which we realise by
  clamping it to the circuit's own free output. Its duration T, coupling init, lr and weight
  decay are chosen on validation (:func:`select_eads` over :data:`EADS_SPACE`). The weight decay
  is decoupled (AdamW: every update also shrinks each conductance by ``lr * weight_decay`` of
  its value), a digital training choice like Adam itself; without it EADS's ~0.5 M parameters
  overfit the small sets (sz_taxi's 882 training windows of 1,872 inputs, texas_covid's 356 of
  3,556) to below a ridge regression on the same inputs (docs/spatiotemporal.md).
* **NP-GL** (the reference node on; conditional-likelihood training, MAE of the conditional
  means): one node per (sensor, time step) of the target feature, ``N * history`` clamped
  inputs then ``N * horizon`` outputs, ``J`` masked by :func:`npgl_mask`. A missing output
  value is conditioned on as 0 (the training mean) and left out of the loss.
* **Graph WaveNet, MTGNN, DDGCRN, MegaCRN**, historical average, last value
  (:mod:`eads.baselines.gnn`): Adam (with the release's weight decay) on the masked MAE of the
  z-scored target plus the model's auxiliary loss (MegaCRN's memory losses), the gradient norm
  clipped where the release clips it. The two references do not train.

When not to use: outside this suite's windows and z-units (the framings assume
:func:`eads.data.spatiotemporal.make_forecast_splits`'s layout and scaler).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eads.bench.forecasting import (
    AbstractForecaster,
    train_forecaster,
    train_forecaster_grid,
    validation_mae,
)
from eads.tasks.select import eads_space

EADS_HIDDEN = 128
EADS_SPACE: dict = eads_space(n_hidden=EADS_HIDDEN, weight_decay={"log_uniform": [1e-3, 30.0]})
"""EADS's validation search space in this suite: the PDE suite's
(:func:`eads.tasks.select.eads_space`, ``n_hidden`` fixed) with the decoupled weight decay added."""
NPGL_TEMPORAL_REACH = 3
"""NP-GL couples time steps at most this far apart (plus outputs to the last history steps)."""


class GNNForecaster(AbstractForecaster):
    """A GNN baseline: Adam (with its release's weight decay and epsilon) on the masked MAE,
    norm clipped."""

    def __init__(
        self,
        model,
        splits,
        lr,
        weight_decay: float = 0.0,
        grad_clip: float = 0.0,
        eps: float = 1e-8,
    ):
        super().__init__(model, splits, lr)
        self.trainable = bool(getattr(model, "trainable", True))
        self.grad_clip = float(grad_clip)
        if self.trainable:
            self.opt = torch.optim.Adam(
                model.parameters(), lr=self.lr, weight_decay=weight_decay, eps=eps
            )

    def step(self, x, y, m):
        from eads.data.spatiotemporal import masked_mae_loss

        self.model.train()
        pred = self.model(x)  # (B, horizon, N)
        loss = masked_mae_loss(pred, y, m) + self.model.auxiliary_loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        return float(loss.detach())


class EADSForecaster(AbstractForecaster):
    """EADS on the flattened window; EC-Train with unclamped outputs where a target is missing."""

    def __init__(self, model, splits, lr, weight_decay: float = 0.0):
        from eads.config import TrainConfig
        from eads.learn import ECTrain
        from eads.learn.loop import make_optimizer

        super().__init__(model, splits, lr)
        self.trainer = ECTrain()
        if weight_decay < 0 or not np.isfinite(weight_decay):
            raise ValueError(f"weight_decay={weight_decay!r} must be a finite number >= 0.")
        if weight_decay:
            params = [p for p in model.parameters() if p.requires_grad]
            self.opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=weight_decay)
        else:
            self.opt = make_optimizer(model, TrainConfig(lr=self.lr, optimizer="adam"))

    def forward_z(self, x):
        out = self.model(x.reshape(x.shape[0], -1))  # (B, horizon * N)
        return out.reshape(x.shape[0], self.horizon, self.n_nodes)

    def step(self, x, y, m):
        from eads.learn.loop import apply_gradients

        flat_x = x.reshape(x.shape[0], -1)  # (B, history * N * F)
        flat_y, flat_m = y.reshape(y.shape[0], -1), m.reshape(m.shape[0], -1)  # (B, horizon*N)
        if not bool(flat_m.all()):
            with torch.no_grad():
                free = self.model(flat_x)  # the unclamped outputs: no error current
            flat_y = torch.where(flat_m, flat_y, free)
        loss, grads = self.trainer.loss_and_gradients(self.model, flat_x, flat_y)
        apply_gradients(self.model, grads, self.opt)
        return float(loss)


class NPGLForecaster(AbstractForecaster):
    """NP-GL on (node, time) nodes of the target feature; masked conditional-likelihood MAE."""

    def __init__(self, model, splits, lr):
        from eads.config import TrainConfig
        from eads.learn.loop import make_optimizer

        super().__init__(model, splits, lr)
        self.opt = make_optimizer(model, TrainConfig(lr=self.lr, optimizer="adam"))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.feature].reshape(x.shape[0], -1)  # (B, history * N)

    def forward_z(self, x):
        out = self.model(self.inputs(x))  # (B, horizon * N)
        return out.reshape(x.shape[0], self.horizon, self.n_nodes)

    def step(self, x, y, m):
        self.model.train()
        flat_y, flat_m = y.reshape(y.shape[0], -1), m.reshape(m.shape[0], -1)
        nodes = self.model.nodes(self.inputs(x), torch.where(flat_m, flat_y, 0.0))  # (B, D)
        mu = self.model.conditional_mean(nodes)[:, self.model.n_inputs :]  # (B, horizon * N)
        w = flat_m.to(mu.dtype)
        loss = ((mu - flat_y).abs() * w).sum() / w.sum().clamp_min(1.0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def npgl_mask(
    adjacency: np.ndarray, history: int, horizon: int, reach: int = NPGL_TEMPORAL_REACH
) -> np.ndarray:
    """NP-GL's coupling mask over ``(time, node)`` nodes, inputs (history) then outputs.

    Node index ``t * N + n`` for time step ``t`` in ``0 .. history + horizon - 1``. Coupled when
    spatially linked (same node or a graph edge) and temporally near (``|t - s| <= reach``, or an
    output step with one of the last ``reach`` history steps); input-input pairs are not coupled
    (clamped inputs never act on each other). Returns ``(D, D)`` bool, symmetric.
    """
    n = adjacency.shape[0]
    spatial = (adjacency > 0) | (adjacency.T > 0) | np.eye(n, dtype=bool)  # (N, N)
    steps = np.arange(history + horizon)
    is_out = steps >= history
    near = np.abs(steps[:, None] - steps[None, :]) <= reach
    recent = steps >= history - reach
    near |= (is_out[:, None] & recent[None, :]) | (recent[:, None] & is_out[None, :])
    near &= is_out[:, None] | is_out[None, :]  # no input-input couplings
    return np.kron(near, spatial)  # (T*N, T*N)


def build_forecaster(
    model_name: str,
    data,
    splits,
    lr: float,
    seed: int,
    widths: dict | None = None,
    optimizer: dict | None = None,
    params: dict | None = None,
) -> AbstractForecaster:
    """The forecaster of ``model_name`` on ``data`` (its adjacency) and ``splits``, seeded.

    ``widths`` / ``optimizer``: a GNN's constructor keywords and Adam settings; ``params``: an
    EADS selection trial's ``duration``, ``coupling_init`` and ``weight_decay`` (other keys
    are ignored).
    """
    from eads.baselines.gnn import build_gnn
    from eads.circuit import EADS, NPGL

    torch.manual_seed(seed)
    _, hist, n, f = splits.train.x.shape
    horizon = splits.horizon
    if model_name == "eads":
        chosen = {k: v for k, v in (params or {}).items() if k in ("duration", "coupling_init")}
        model = EADS(
            n_inputs=hist * n * f,
            n_hidden=EADS_HIDDEN,
            n_outputs=horizon * n,
            seed=seed,
            reference=True,
            **chosen,
        )
        return EADSForecaster(model, splits, lr, float((params or {}).get("weight_decay", 0.0)))
    if model_name == "npgl":
        mask = npgl_mask(data.adjacency, hist, horizon)
        model = NPGL(
            hist * n,
            horizon * n,
            mask=torch.from_numpy(mask.astype(np.float32)),
            seed=seed,
            reference=True,
        )
        return NPGLForecaster(model, splits, lr)
    model = build_gnn(
        model_name,
        n_nodes=n,
        in_features=f,
        history=hist,
        horizon=horizon,
        adjacency=data.adjacency,
        target_feature=splits.target_feature,
        **(widths or {}),
    )
    return GNNForecaster(model, splits, lr, **(optimizer or {}))


def select_eads(
    data, splits, budget, protocol, seed: int, progress: bool = False, partial=None, space=None
):
    """EADS's T, coupling init, lr and weight decay chosen on validation:
    ``budget.select_trials`` TPE trials of :func:`eads.tasks.select.run_search` over ``space``
    (default :data:`EADS_SPACE`, ``n_hidden`` fixed at :data:`EADS_HIDDEN`), each trained to
    patience by
    :func:`eads.bench.forecasting.train_forecaster` and scored by its best masked validation
    MAE; returns the chosen trial's forecaster, its training record, and the selection's
    summary with the trial table.

    ``partial``: the folder of the trials' per-epoch checkpoints (``trial<i>.pt``, keyed by the
    trial's settings). A killed search run again proposes the same trials (the sampler is
    seeded per trial over the finished ones), the finished ones return from their last
    checkpoint at once, and the one that was training continues from its last epoch."""
    from eads.learn.loop import make_scheduler
    from eads.tasks.select import TrialOutcome, run_search

    trial = iter(range(budget.select_trials))

    def objective(params, report):
        number = next(trial)
        fc = build_forecaster("eads", data, splits, float(params["lr"]), seed, params=params)
        tr = train_forecaster(
            fc,
            splits,
            budget,
            protocol,
            seed,
            make_scheduler=make_scheduler,
            progress=progress,
            checkpoint=None if partial is None else Path(partial) / f"trial{number}.pt",
            key=dict(params),
        )
        return TrialOutcome(
            score=tr["best_val_mae"],
            epochs=tr["epochs"],
            stop_reason=tr["stopped_by"],
            val_curve=[v[2] for v in tr["val_curve"]],
            payload=(fc, tr),
            seconds=tr["train_time_s"],  # accumulated over resumes, unlike this call's wall time
        )

    space = space or EADS_SPACE
    sel = run_search(objective, space, budget.select_trials, seed, allowed=tuple(space))
    fc, training = sel.payload
    return fc, training, {**sel.summary(), "metric": "best masked validation MAE (data units)"}


_NO_TRAINING = dict(train_time_s=0.0, epochs=0, updates=0, stopped_by="none", stop_reason="none")


def fit_forecaster(
    model_name: str,
    data,
    splits,
    budget,
    protocol,
    seed: int,
    widths: dict | None = None,
    optimizer: dict | None = None,
    progress: bool = False,
    partial=None,
    space: dict | None = None,
):
    """``model_name`` built and trained to ``budget``; returns the forecaster, its training
    record and its selection summary (None unless EADS's validation search ran).

    ``partial``: a folder for the per-epoch checkpoints of the training runs, so a killed cell
    continues (:func:`eads.bench.forecasting.train_forecaster`); None: none.

    ``budget`` None: no training (historical average, last value); the record still holds the
    masked validation MAE every trained model stops on, for the learning-curve plots. EADS with
    ``budget.select_trials > 0``: :func:`select_eads`. Otherwise one run per lr of
    ``budget.lr_grid`` (:func:`eads.bench.forecasting.train_forecaster_grid`).
    """
    from eads.learn.loop import make_scheduler

    if budget is None:
        fc = build_forecaster(model_name, data, splits, 0.0, seed)
        return fc, {**_NO_TRAINING, "best_val_mae": validation_mae(fc, splits.val, protocol)}, None
    if model_name == "eads" and budget.select_trials > 0:
        return select_eads(data, splits, budget, protocol, seed, progress, partial, space)

    def build(lr: float) -> AbstractForecaster:
        return build_forecaster(model_name, data, splits, lr, seed, widths, optimizer)

    fc, training = train_forecaster_grid(
        build,
        splits,
        budget,
        protocol,
        seed,
        make_scheduler=make_scheduler,
        progress=progress,
        partial=partial,
    )
    return fc, training, None


__all__ = [
    "EADS_HIDDEN",
    "EADS_SPACE",
    "NPGL_TEMPORAL_REACH",
    "EADSForecaster",
    "GNNForecaster",
    "NPGLForecaster",
    "build_forecaster",
    "fit_forecaster",
    "npgl_mask",
    "select_eads",
]
