"""The training loop: one :class:`Trainer` for one CPU, one GPU or many ranks under torchrun."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

import specvit
from specvit.config import SpecViTConfig
from specvit.instrument.grid import GRID_ATOL
from specvit.models.specvit import SpecViT
from specvit.preprocessing import median_snr
from training.engine.batches import SpectraSource, StepBatches, label_columns, to_model_batch
from training.engine.seeding import DROPOUT_STREAM, step_seed
from training.evaluation.eval_sets import read_eval_set
from training.evaluation.scoring import score
from training.trainer.checkpoint import (
    STATE_KEYS,
    CheckpointError,
    check_weights,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from training.trainer.config import ConfigError, RunConfig
from training.trainer.distributed import DistInfo, all_mean, barrier, init_distributed
from training.trainer.ema import EMA
from training.trainer.losses import regression_loss
from training.trainer.optim import build_optimizer
from training.trainer.rundir import RunDir
from training.trainer.teacher import GridTeacher

__all__ = ["NonFiniteLossError", "Trainer", "label_statistics"]

#: Run-config keys a resumed run may change: they do not alter what is computed.
RESUMABLE_CHANGES = frozenset(
    {
        "train.max_steps",
        "train.max_cpu_minutes",
        "train.keep_checkpoints",
        "train.progress",
        "train.log_every",
        "train.checkpoint_every",
    }
)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped before updating the weights."""


def label_statistics(
    labels: torch.Tensor, names: list[str], norm: str, fixed: dict[str, list[float]]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Label normalisation ``(shift, scale)`` with ``physical = shift + scale·normalised``.

    Parameters
    ----------
    labels : torch.Tensor
        (N, 3) training labels in :data:`specvit.labels.LABEL_NAMES` order.
    names : list of str
        The labels the model predicts.
    norm : {"zscore", "minmax"}
        z-score (mean, std) or min-max (min, max − min).
    fixed : dict
        ``{name: [shift, scale]}`` that replace the measured values.
    """
    cols = labels[:, label_columns(names)].double()
    if norm == "zscore":
        shift, scale = cols.mean(dim=0), cols.std(dim=0)
    else:
        low = cols.min(dim=0).values
        shift, scale = low, cols.max(dim=0).values - low
    shifts = [fixed[n][0] if n in fixed else float(s) for n, s in zip(names, shift, strict=True)]
    scales = [fixed[n][1] if n in fixed else float(s) for n, s in zip(names, scale, strict=True)]
    if not all(s > 0 for s in scales):
        raise ValueError(f"training labels {names} have zero spread ({scales}): cannot normalise")
    return tuple(shifts), tuple(scales)


#: What a warm start reads from a checkpoint (``ema`` when it kept one).
_WEIGHT_KEYS = ("step", "run_config", "model_config", "model")


def _model_config(state: dict[str, Any], path: str | Path) -> SpecViTConfig:
    """The model config a checkpoint holds (a :class:`CheckpointError` when it is not one)."""
    try:
        return SpecViTConfig.from_dict(state["model_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged: its model_config does not load ({err})") from err


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("overrides", "prior", "label_stats"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class Trainer:
    """Train a SpecViT model as a :class:`~training.trainer.config.RunConfig` describes.

    Parameters
    ----------
    config : RunConfig
        The run. With ``resume``, it must equal the checkpoint's config except for the keys in
        :data:`RESUMABLE_CHANGES`.
    source : SpectraSource
        Training batches, the validation set and training labels.
    resume : str, pathlib.Path or None
        A checkpoint file or a folder holding checkpoints (the newest is used).

    Raises
    ------
    ValueError
        Before training: ``out_dir`` cannot be written (:meth:`RunDir.check_writable`), a
        resumed or warm-start checkpoint is unreadable or damaged
        (:class:`~training.trainer.checkpoint.CheckpointError`: no training state, weights of
        another model, a step outside the run's schedule), or the recipe does not fit it.
    """

    def __init__(
        self,
        config: RunConfig,
        source: SpectraSource,
        resume: str | Path | None = None,
    ) -> None:
        self.config, self.source = config, source
        t = config.train
        self.run_dir = RunDir(config.out_dir)
        try:
            self.run_dir.check_writable()
        except ValueError as err:
            raise ConfigError(f"out_dir={config.out_dir}: {err}") from err
        kind = (
            "cuda"
            if t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available())
            else "cpu"
        )
        self.dist: DistInfo = init_distributed(kind)
        self.device = (
            torch.device(kind, self.dist.local_rank) if kind == "cuda" else torch.device("cpu")
        )
        if kind == "cuda":
            torch.cuda.set_device(self.device)
        if t.batch_size % self.dist.world_size:
            raise ValueError(
                f"train.batch_size={t.batch_size} is not divisible by {self.dist.world_size} ranks"
            )
        self.rank_batch = t.batch_size // self.dist.world_size
        self.steps_per_epoch = source.steps_per_epoch(self.rank_batch, self.dist.world_size)
        self.total_steps = t.epochs * self.steps_per_epoch
        self.amp_dtype = self._amp_dtype()

        state = load_checkpoint(resume, STATE_KEYS) if resume is not None else None
        init = load_checkpoint(t.init_from, _WEIGHT_KEYS) if state is None and t.init_from else None
        if state is not None:
            self._check_resume(state["run_config"])
            if state["step"] > self.total_steps:
                raise CheckpointError(
                    f"{resume} is damaged or from another run: its step {state['step']} lies "
                    f"beyond the run's {self.total_steps} steps"
                )
            model_config = _model_config(state, resume)
        elif init is not None:
            model_config = self._init_model_config(init)
        else:
            model_config = self._new_model_config()
        torch.manual_seed(config.seed)
        self.model: SpecViT = SpecViT(model_config).to(self.device)
        if init is not None:
            part = "ema" if init.get("ema") is not None else "model"
            check_weights(self.model, init[part], f"train.init_from={t.init_from}: {part!r}")
            self.model.load_state_dict(init[part])
            self._note(f"warm start from {t.init_from} (step {init['step']})")
        self.optimizer, self.scheduler = build_optimizer(self.model, config.optim, self.total_steps)
        self.scaler = torch.amp.GradScaler(kind, enabled=self.amp_dtype == torch.float16)
        self.ema = EMA(self.model, t.ema_decay) if t.ema_decay is not None else None
        self.step = 0
        self.cpu_seconds = 0.0
        self.last_checkpoint: Path | None = None
        self.val_metrics: dict[str, Any] = {}
        if state is not None:
            self._restore(state, resume)
            self.last_checkpoint = (
                Path(resume) if Path(resume).is_file() else latest_checkpoint(resume)
            )
        ddp = (
            DistributedDataParallel(
                self.model, device_ids=[self.device] if kind == "cuda" else None
            )
            if self.dist.distributed
            else None
        )
        # What the training step calls: DDP's wrapper when distributed, compiled if asked.
        step_model = ddp if ddp is not None else self.model
        self.step_model = torch.compile(step_model) if t.compile else step_model
        if not np.allclose(source.wavelength, self.model.wavelength, rtol=0, atol=GRID_ATOL):
            raise ValueError("the training spectra are not on the model's wavelength grid")
        bench = config.data.val_set
        validation = read_eval_set(bench) if bench else source.validation_set()
        if bench and not np.allclose(validation["wavelength"], source.wavelength, atol=GRID_ATOL):
            raise ValueError(f"data.val_set={bench} is not on the training spectra's grid")
        self.val_batch = to_model_batch(validation, model_config)
        kept = self.val_batch["kept"]
        self.val_snr = median_snr(
            torch.as_tensor(validation["flux"]), torch.as_tensor(validation["error"])
        )[kept]
        self.val_labels = torch.as_tensor(validation["labels"], dtype=torch.float32)[kept]
        self.val_bayes = (
            {k: validation[k][kept.numpy()] for k in ("posterior_mean", "posterior_std")}
            if bench
            else None
        )

    # ------------------------------------------------------------------ setup
    def _amp_dtype(self) -> torch.dtype | None:
        precision = self.config.train.precision
        if precision == "fp32":
            return None
        if precision == "fp16" and self.device.type == "cpu":
            self._note("precision fp16 runs as bf16 on the CPU (no fast fp16 there)")
            return torch.bfloat16
        return torch.float16 if precision == "fp16" else torch.bfloat16

    def _new_model_config(
        self, norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    ) -> SpecViTConfig:
        """The recipe's model, with its label normalisation measured (or ``norm``)."""
        c = self.config
        shift, scale = norm or label_statistics(
            self.source.train_labels(), c.labels, c.label_norm, c.label_stats
        )
        return specvit.get_preset(
            c.model.preset,
            **c.model.overrides,
            label_names=tuple(c.labels),
            label_shift=shift,
            label_scale=scale,
            domain=self.source.domain(),
        )

    def _init_model_config(self, init: dict[str, Any]) -> SpecViTConfig:
        """The model of a warm start: the recipe's, with the source model's label normalisation.

        The source must be the same network (its dropout, domain and σ calibration aside, and
        its input preparation: ``input_norm``, ``continuum_order`` and ``rest_frame`` may change,
        a fine-tune to a new input), trained with the same label normalisation settings; else a
        ``ValueError`` names the fields.
        """
        c = self.config
        source = _model_config(init, c.train.init_from)
        recipe = self._new_model_config((source.label_shift, source.label_scale))
        own = {
            "domain": None,
            "sigma_scale": (),
            "sigma_snr_knots": (),
            "sigma_snr_factors": (),
            "dropout": 0.0,
            "attn_dropout": 0.0,
            "input_norm": "median",
            "continuum_order": 0,
            "rest_frame": False,
        }
        mine, theirs = (m.replace(**own).to_dict() for m in (recipe, source))
        diff = [f"{k}: {theirs[k]!r} -> {mine[k]!r}" for k in mine if mine[k] != theirs[k]]
        run = init["run_config"]
        for key, value in (("label_norm", c.label_norm), ("label_stats", c.label_stats)):
            if run.get(key, value) != value:
                diff.append(f"{key}: {run[key]!r} -> {value!r}")
        if diff:
            raise ValueError(
                f"train.init_from={c.train.init_from} holds another model than this recipe "
                f"({', '.join(diff)})"
            )
        return recipe

    def _check_resume(self, saved: dict[str, Any]) -> None:
        # Keys added to RunConfig after the checkpoint was written take their defaults, which
        # reproduce the behaviour before they existed.
        old = _flatten(RunConfig.from_dict(saved).to_dict())
        new = _flatten(self.config.to_dict())
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        forbidden = [k for k in changed if k not in RESUMABLE_CHANGES]
        if forbidden:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in forbidden)
            raise ValueError(f"cannot resume with a different recipe ({details})")

    def _restore(self, state: dict[str, Any], path: str | Path) -> None:
        check_weights(self.model, state["model"], f"{path}: 'model'")
        if self.ema is not None:
            check_weights(self.model, state["ema"], f"{path}: 'ema'")
        parts = [(self.model, "model"), (self.optimizer, "optimizer")]
        parts += [(self.scheduler, "scheduler"), (self.scaler, "scaler")]
        parts += [(self.ema, "ema")] if self.ema is not None else []
        for owner, part in parts:
            try:
                owner.load_state_dict(state[part])
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise CheckpointError(
                    f"{path} is damaged: its {part!r} state does not load ({err})"
                ) from err
        self.step = int(state["step"])
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
        self.val_metrics = state.get("val_metrics", {})

    def _note(self, message: str) -> None:
        if self.dist.is_main:
            tqdm.write(f"[train] {message}")

    # ------------------------------------------------------------------ run
    def fit(self) -> dict[str, Any]:
        """Train until the last epoch (or ``train.max_steps``); return the last validation."""
        t = self.config.train
        stop = min(self.total_steps, t.max_steps) if t.max_steps else self.total_steps
        if self.dist.is_main:
            self.run_dir.write_config(self.config.to_dict())
            self._note(
                f"{self.model.num_parameters() / 1e6:.2f} M parameters, {self.dist.world_size} "
                f"rank(s) on {self.device.type}, {self.steps_per_epoch} steps/epoch, steps "
                f"{self.step} -> {stop} of {self.total_steps}"
            )
            if self.step >= stop:
                self._note(f"nothing to train: the run is at step {self.step} already")
        loader = DataLoader(
            StepBatches(
                self.source,
                self.model.config,
                self.dist.rank,
                self.dist.world_size,
                self.rank_batch,
                teacher=self._teacher(),
            ),
            batch_size=None,
            sampler=range(self.step, stop),
            num_workers=self.config.data.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        # train.progress "auto" leaves it to tqdm (disable=None): a bar only on a terminal
        disable = None if t.progress == "auto" else not t.progress
        bar = tqdm(
            total=stop,
            initial=self.step,
            disable=disable if self.dist.is_main else True,
            unit="step",
        )
        window_loss, window_n, window_start = 0.0, 0, time.perf_counter()
        cpu_start = time.process_time() - self.cpu_seconds
        for batch in loader:
            loss = self.train_step(batch)
            self.step += 1
            window_loss, window_n = window_loss + loss, window_n + 1
            self.cpu_seconds = time.process_time() - cpu_start
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == stop:
                elapsed = time.perf_counter() - window_start
                self._log(
                    {
                        "kind": "train",
                        "loss": window_loss / window_n,
                        "lr": self.scheduler.get_last_lr()[0],
                        "spectra_per_s": window_n * t.batch_size / elapsed,
                    }
                )
                bar.set_postfix(loss=f"{window_loss / window_n:.4f}")
                window_loss, window_n, window_start = 0.0, 0, time.perf_counter()
            out_of_budget = bool(t.max_cpu_minutes) and self._budget_spent(t.max_cpu_minutes)
            if self.step % self.steps_per_epoch == 0 or out_of_budget:
                self.validate()
                self._checkpoint()
            elif (t.checkpoint_every and self.step % t.checkpoint_every == 0) or self.step == stop:
                self._checkpoint()
            if out_of_budget:
                self._note(f"CPU budget of {t.max_cpu_minutes:g} min used up at step {self.step}")
                break
        bar.close()
        return self.val_metrics

    def _teacher(self) -> GridTeacher | None:
        """The grid teacher of ``data.teacher_grid`` over the engine's emulator and prior."""
        grid = self.config.data.teacher_grid
        if grid is None:
            return None
        return GridTeacher(self.source.simulator.emulator, self.source.prior.label_prior, grid)

    def _budget_spent(self, minutes: float) -> bool:
        """Whether any rank has used ``minutes`` of CPU time (every rank gets the same answer)."""
        spent = torch.tensor(float(self.cpu_seconds >= 60 * minutes), device=self.device)
        return bool(all_mean(spent) > 0)

    def train_step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimiser step; returns the loss averaged over ranks."""
        # The global RNG drives dropout: reseeded every step from (seed, rank, step).
        torch.manual_seed(step_seed(self.config.seed, self.dist.rank, self.step, DROPOUT_STREAM))
        model = self.step_model
        model.train()
        x = batch["x"].to(self.device, non_blocking=True)
        y = self.model.normalize_labels(batch["y"].to(self.device, non_blocking=True))
        t = batch.get("t")  # the teacher's target of the means, if any
        if t is not None:
            t = self.model.normalize_labels(t.to(self.device, non_blocking=True))
        with torch.enable_grad(), self.autocast():
            output = model(x, detach_sigma=self.config.train.sigma_grad == "head")
            loss = regression_loss(output, y, self.config.train.loss, mean_target=t)
        mean_loss = float(all_mean(loss.detach()))
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({mean_loss}) at step {self.step + 1} (epoch "
                f"{self.step // self.steps_per_epoch + 1}); the weights were not updated and no "
                f"checkpoint was written after it. Last good checkpoint: "
                f"{self.last_checkpoint or 'none yet'}. Lower optim.lr, tighten "
                "optim.clip_grad_norm, use train.precision=fp32, or check the data for NaN/inf."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.optim.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.config.optim.clip_grad_norm
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return mean_loss

    def autocast(self) -> contextlib.AbstractContextManager:
        """The run's autocast context (a no-op for fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ evaluation
    def eval_model(self) -> SpecViT:
        """The weights to evaluate and publish: the EMA average when kept, else the model."""
        if self.ema is None:
            return self.model
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.ema.state_dict())
        return model

    @torch.no_grad()
    def predict_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """Forward ``x`` (N, C, L) through :meth:`eval_model` in chunks of the batch size."""
        model = self.eval_model().eval()
        outputs = []
        for chunk in x.split(self.config.train.batch_size):
            with self.autocast():
                outputs.append(model(chunk.to(self.device)).float().cpu())
        return torch.cat(outputs)

    def validate(self) -> dict[str, Any]:
        """Metrics on the fixed validation set (rank 0 computes, the others wait)."""
        if self.dist.is_main:
            output = self.predict_normalised(self.val_batch["x"])
            true = self.val_batch["y"]
            loss = regression_loss(
                output, self.model.normalize_labels(true), self.config.train.loss
            )
            mean, sigma = self.model.to_physical(output)
            names = self.model.config.label_names
            columns = label_columns(names)
            bayes, labels = self.val_bayes, self.val_labels.numpy()
            metrics = score(
                true.numpy(),
                mean.numpy(),
                self.val_snr.numpy(),
                names,
                sigma=None if sigma is None else sigma.numpy(),
                bayes_mean=None if bayes is None else bayes["posterior_mean"][:, columns],
                bayes_sigma=None if bayes is None else bayes["posterior_std"][:, columns],
                bin_values={"T_eff": labels[:, 0], "M_H": labels[:, 2]},
            )
            self.val_metrics = {"loss": float(loss), "metrics": metrics}
            self._log({"kind": "val", **self.val_metrics})
            self._note(
                f"epoch {self.epoch} step {self.step}: val loss {float(loss):.4f}, "
                + ", ".join(
                    f"R²({k}) {v['r2']:.3f}" if v["r2"] is not None else f"R²({k}) –"
                    for k, v in metrics["overall"]["metrics"].items()
                )
            )
        barrier()
        return self.val_metrics

    # ------------------------------------------------------------------ bookkeeping
    @property
    def epoch(self) -> float:
        """Epochs completed (fractional inside an epoch)."""
        return self.step / self.steps_per_epoch

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.append(
            {
                "step": self.step,
                "epoch": self.epoch,
                "time": time.time(),
                "cpu_seconds": self.cpu_seconds,
                **record,
            }
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds (tensors and plain types only)."""
        return {
            "format": 1,
            "step": self.step,
            "cpu_seconds": self.cpu_seconds,
            "run_config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "val_metrics": self.val_metrics,
        }

    def _checkpoint(self) -> None:
        if self.dist.is_main:
            self.last_checkpoint = save_checkpoint(
                self.state_dict(),
                self.run_dir.checkpoint_dir,
                self.step,
                keep=self.config.train.keep_checkpoints,
            )
        barrier()
