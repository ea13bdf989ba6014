"""A scikit-learn style estimator for plain function learning with EADS or NP-GL.

>>> reg = EADSRegressor(model="eads", n_hidden=64).fit(X_train, y_train)
>>> reg.predict(X_test); reg.score(X_test, y_test)   # R^2
>>> reg.history_.stop_reason                          # "patience", "epoch_cap" or "wall_time"

Inputs and targets are z-scored with statistics of the training part only; a validation part
(``val_fraction``) is carved from the data given to ``fit`` for early stopping. The training
defaults are :class:`eads.config.TrainConfig`'s: train until ``patience`` epochs bring no lower
validation loss, under a plateau learning-rate schedule, with an epoch cap (``epochs``) high
enough that patience ends nearly every run; ``max_time_s`` bounds the training time.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from eads._errors import DataError
from eads.config import ModelConfig, TrainConfig
from eads.data.tabular import Standardizer, split_and_standardize
from eads.learn.loop import History, fit
from eads.learn.registry import build_model, default_trainer_for, make_trainer


class EADSRegressor:
    """Fit ``y = f(X)`` with an EADS circuit (EC-Train by default), NP-GL or an MLP.

    ``epochs`` is the epoch cap, ``patience`` the early stopping, ``schedule`` the learning-rate
    schedule ("none", "plateau" or "cosine") and ``max_time_s`` a wall-time limit on training
    (None: none), as in :class:`eads.config.TrainConfig`. After ``fit``, ``history_`` holds the
    per-epoch losses and learning rates and ``history_.stop_reason`` what ended training.
    """

    def __init__(
        self,
        model: str = "eads",
        trainer: str | None = None,
        n_hidden: int = 64,
        duration: float = 1.0,
        n_steps: int = 8,
        epochs: int = TrainConfig.epochs,
        batch_size: int = TrainConfig.batch_size,
        lr: float = TrainConfig.lr,
        optimizer: str = TrainConfig.optimizer,
        patience: int = TrainConfig.patience,
        schedule: str = TrainConfig.schedule,
        max_time_s: float | None = TrainConfig.max_time_s,
        val_fraction: float = 0.15,
        seed: int = 0,
        progress: bool = False,
    ):
        self.model = model
        self.trainer = trainer
        self.n_hidden = n_hidden
        self.duration = duration
        self.n_steps = n_steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.patience = patience
        self.schedule = schedule
        self.max_time_s = max_time_s
        self.val_fraction = val_fraction
        self.seed = seed
        self.progress = progress

    # scikit-learn protocol ------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params) -> EADSRegressor:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"EADSRegressor(model={self.model!r}, n_hidden={self.n_hidden})"

    # ----------------------------------------------------------------------------------------
    @staticmethod
    def _as_2d(name: str, a) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise DataError(f"{name} must be 1-D or 2-D, got shape {a.shape}.")
        if a.shape[0] == 0:
            raise DataError(f"{name} is empty.")
        if not np.isfinite(a).all():
            raise DataError(f"{name} holds NaN or infinite values.")
        return a

    def fit(self, X, y) -> EADSRegressor:
        X, Y = self._as_2d("X", X), self._as_2d("y", y)
        if X.shape[0] != Y.shape[0]:
            raise DataError(f"X and y differ in length: {X.shape[0]} and {Y.shape[0]}.")
        self._y_was_1d = np.asarray(y).ndim == 1
        s = split_and_standardize(
            X, Y, val_fraction=self.val_fraction, test_fraction=0.0, seed=self.seed
        )
        self.x_scaler_, self.y_scaler_ = s.x_scaler, s.y_scaler
        mcfg = ModelConfig(
            kind=self.model, n_hidden=self.n_hidden, duration=self.duration, n_steps=self.n_steps
        )
        tcfg = TrainConfig(
            trainer=self.trainer or default_trainer_for(self.model),
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            patience=self.patience,
            schedule=self.schedule,
            max_time_s=self.max_time_s,
            seed=self.seed,
        )
        self.model_ = build_model(mcfg, X.shape[1], Y.shape[1], seed=self.seed)
        val = (torch.from_numpy(s.x_val), torch.from_numpy(s.y_val)) if len(s.x_val) else None
        self.history_: History = fit(
            self.model_,
            make_trainer(tcfg.trainer),
            (torch.from_numpy(s.x_train), torch.from_numpy(s.y_train)),
            val,
            tcfg,
            progress=self.progress,
        )
        return self

    def predict(self, X) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise DataError("This EADSRegressor is not fitted yet; call fit(X, y) first.")
        X = self._as_2d("X", X)
        xs: Standardizer = self.x_scaler_
        with torch.no_grad():
            pred = self.model_(torch.from_numpy(xs.transform(X))).numpy()
        out = self.y_scaler_.inverse(pred)
        return out[:, 0] if self._y_was_1d else out

    def score(self, X, y) -> float:
        """Coefficient of determination R^2, averaged uniformly over outputs."""
        Y = self._as_2d("y", y)
        P = self.predict(X).reshape(Y.shape)
        ss_res = ((Y - P) ** 2).sum(axis=0)
        ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
        return float(np.mean(1 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0)))
