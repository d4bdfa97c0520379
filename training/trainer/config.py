"""Training configuration: typed dataclasses read from YAML, with ``section.key=value`` overrides.

A run is described by one YAML file (see ``training/configs/``) whose sections map one-to-one
onto the dataclasses below. Every key is checked: an unknown key, a wrong type or an
inconsistent value raises :class:`ConfigError` naming it, before any work starts.

Command-line overrides use dotted paths and YAML values, e.g. ``optim.lr=1e-4``,
``labels=[T_eff,log_g]`` or ``model.overrides.head=gaussian``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from specvit.instrument.noise import DEFAULT_N_EXPOSURES
from specvit.labels import LABEL_NAMES
from training.trainer.losses import GAUSSIAN_LOSSES, MEAN_TARGET_LOSSES

__all__ = [
    "CONFIGS_DIR",
    "RENAMED_KEYS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "rename_keys",
]

#: The folder of the named training configs (``--config default``: ``default.yaml``).
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


class ConfigError(ValueError):
    """A training configuration is malformed: unknown key, wrong type or bad value."""


@dataclass
class ModelConfig:
    """Which SpecViT to train.

    Parameters
    ----------
    preset : str
        A :func:`specvit.create_model` preset, e.g. ``"specvit_l6_h256"`` (the paper's ViT).
    overrides : dict
        :class:`specvit.SpecViTConfig` fields to change (``head``, ``tokenizer``,
        ``input_channels`` …). The label fields are set by the trainer from ``labels`` and
        ``label_norm`` and may not be given here.
    """

    preset: str = "specvit_l6_h256"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the spectra come from and how noise is applied.

    Parameters
    ----------
    source : {"engine", "hdf5"}
        ``"engine"``: :mod:`training.engine.simulate` draws fresh spectra and fresh noise every
        step. ``"hdf5"``: shards in the layout of :mod:`specvit.io.hdf5`, with fresh noise ``x +
        noise_level·ε⊙σ`` drawn every step.
    train_path, val_path : str or None
        HDF5 files (``source="hdf5"`` only); ``train_path`` may be a glob over shards.
    n_train : int
        Spectra per epoch for ``"engine"`` (every spectrum is new). For ``"hdf5"`` an epoch is
        one pass over the shards and ``n_train`` is not used.
    n_val : int
        Size of the fixed validation set (one fixed noise draw).
    noise_level : float
        ``"hdf5"``: multiplier of the fresh noise added to the stored flux every step (and
        once, fixed, to the validation flux). ``"engine"``: must be 1, since the engine's
        spectra are already noisy; set their depth with ``n_exposures``.
    etc_dir : str or None
        PFS ETC tables for the engine's noise model; a relative path is read from the
        repository root (:func:`training.paths.resolve_path`), so the default is the shared
        folder beside the repository. None uses the engine's approximate noise model (it warns).
    n_exposures : int
        Number of 900 s exposures the engine simulates (the paper: 12).
    prior : dict
        Keyword overrides of the engine's label prior (``source="engine"`` only).
    effects : dict or str
        Real-data effects of the engine (``source="engine"`` only): ``{}`` none, ``"default"``
        every effect at its default prior, or ``{name: true | settings}`` with names ``lsf``,
        ``wavelength``, ``extinction``, ``sky``, ``cosmic_rays``, ``calibration``,
        ``sigma_scale``, ``telluric`` (:meth:`training.engine.effects.Effects.from_dict`).
        ``"default"`` (or ``true``) is written out as the mapping it means today, so a run's
        ``config.yaml`` and checkpoints record exactly which effects it drew.
    num_workers : int
        ``DataLoader`` worker processes building batches (0 = in the training process).
    val_set : str or None
        A validation file of the evaluation sets (:mod:`training.evaluation.eval_sets`): the
        trainer then validates on its spectra as stored (instead of the source's validation set;
        ``n_val`` and the validation noise are not used) and logs, beside the metrics, the
        Bayes-optimal R² and the efficiency per SNR bin of
        :func:`training.evaluation.scoring.score`.
    teacher_grid : list of int or None
        Cells per label (T_eff, log g, [M/H]) of a :class:`training.trainer.teacher.GridTeacher`:
        the means then regress on the grid posterior mean of each training spectrum (the true label
        where the grid does not resolve the posterior), and a Gaussian head's σ on the true labels.
        ``source="engine"`` without a radial velocity only; None trains on the true labels.
    """

    source: Literal["engine", "hdf5"] = "engine"
    train_path: str | None = None
    val_path: str | None = None
    n_train: int = 1_000_000
    n_val: int = 1_000
    noise_level: float = 1.0
    etc_dir: str | None = "../shared/data/pfs_etc"
    n_exposures: int = DEFAULT_N_EXPOSURES
    prior: dict[str, Any] = field(default_factory=dict)
    effects: dict[str, Any] | str = field(default_factory=dict)
    num_workers: int = 0
    val_set: str | None = None
    teacher_grid: list[int] | None = None


@dataclass
class OptimConfig:
    """AdamW with a cosine schedule.

    Parameters
    ----------
    lr : float
        Peak learning rate.
    weight_decay : float
        AdamW decoupled weight decay.
    betas : list of float
        AdamW (β1, β2).
    eta_min : float
        Learning rate at the end of the cosine.
    warmup_steps : int
        Linear warm-up from 0 to ``lr`` over this many steps (0 = none).
    clip_grad_norm : float or None
        Clip the global gradient norm to this value (None = no clipping).
    schedule : {"cosine", "constant"}
        After the warm-up, a cosine from ``lr`` to ``eta_min`` over the whole run, or ``lr``
        held constant (for comparisons at equal CPU budgets, where runs stop early).
    """

    lr: float = 3.0e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eta_min: float = 1.0e-5
    warmup_steps: int = 0
    clip_grad_norm: float | None = 0.5
    schedule: Literal["cosine", "constant"] = "cosine"


@dataclass
class TrainConfig:
    """The loop: length, batch, precision, loss, checkpoints and logs.

    Parameters
    ----------
    epochs : int
        Number of epochs; the cosine runs over ``epochs × steps_per_epoch`` steps.
    batch_size : int
        Global batch size, split evenly over the ranks of a distributed run.
    precision : {"fp32", "bf16", "fp16"}
        Autocast precision. ``"fp16"`` uses a gradient scaler on a GPU; on a CPU, which has
        no fast fp16, it runs as ``"bf16"`` (said in the log).
    loss : {"mse", "l1", "gaussian_nll", "decoupled_nll"}
        Loss in normalised label space, averaged over labels (see
        :func:`training.trainer.losses.regression_loss`); the two NLL losses need a
        model with ``head: gaussian``.
    sigma_grad : {"encoder", "head"}
        Where a Gaussian head's σ loss trains: the whole model (``"encoder"``), or only the
        head's σ weights, from detached features (``"head"``), so the encoder learns from the
        mean's loss alone.
    ema_decay : float or None
        Keep an exponential moving average of the weights with this decay (e.g. 0.999);
        validation and publishing then use the averaged weights.
    device : str
        ``"auto"`` (the rank's GPU when present, else CPU), ``"cpu"`` or ``"cuda"``.
    checkpoint_every : int
        Also checkpoint every this many steps (0 = only at the end of each epoch).
    log_every : int
        Write a training-metrics line every this many steps.
    progress : bool or "auto"
        Show a tqdm progress bar on rank 0: always (True), never (False), or only when
        standard error is a terminal (``"auto"``), so that logs written to a file hold no bar.
    max_steps : int
        Stop after this many steps in total (0 = run all epochs); the schedule is unchanged,
        so a run cut short resumes as if it had not been.
    keep_checkpoints : int
        How many of the newest checkpoints to keep (older ones are deleted).
    max_cpu_minutes : float
        Also stop (with a checkpoint) once the training process has used this much CPU time
        (0 = no limit); counted across resumes. For equal-budget comparisons.
    init_from : str or None
        Warm restart: start from the weights of this checkpoint (a file, or a folder: its
        newest; the EMA average when it kept one), with the label normalisation of its model,
        and a new optimiser, schedule and step count. The recipe must build the same model
        (dropout and the training domain aside; the weights load strictly) with the same label
        normalisation settings. Give the run a new ``seed`` so its data do not repeat the
        first run's.
    compile : bool
        Run the training step's forward and backward through ``torch.compile`` (the weights,
        checkpoints and validation are the eager model's; dropout masks come from compiled code's
        own random stream, so with dropout a compiled run is not bit-identical to an eager
        one). On this project's 2-core CPU it does not pay (``python
        benchmarks/train_throughput.py --recipes default --small-batch 256 --compile``); meant
        for GPUs.
    """

    epochs: int = 200
    batch_size: int = 256
    precision: Literal["fp32", "bf16", "fp16"] = "fp16"
    loss: Literal["mse", "l1", "gaussian_nll", "decoupled_nll"] = "mse"
    sigma_grad: Literal["encoder", "head"] = "encoder"
    ema_decay: float | None = None
    device: str = "auto"
    checkpoint_every: int = 0
    log_every: int = 50
    progress: bool | Literal["auto"] = "auto"
    max_steps: int = 0
    keep_checkpoints: int = 2
    max_cpu_minutes: float = 0.0
    init_from: str | None = None
    compile: bool = False


@dataclass
class RunConfig:
    """A whole training run.

    Parameters
    ----------
    out_dir : str
        Folder for checkpoints (``checkpoints/``), ``metrics.jsonl`` and ``config.yaml``.
    seed : int
        Seeds initialisation, the data streams (per rank) and the validation set.
    labels : list of str
        Labels to predict, any of ``T_eff``, ``log_g``, ``M_H``, in output order.
    label_norm : {"zscore", "minmax"}
        Label normalisation stored in the model config (``physical = shift + scale·z``).
        ``zscore``: mean and std; ``minmax``: min and max − min; both of the training labels.
    label_stats : dict
        Optional fixed statistics ``{label: [shift, scale]}`` instead of measured ones (e.g.
        the paper's log g μ 2.9975, σ 1.1683).
    """

    out_dir: str = "runs/default"
    seed: int = 42
    labels: list[str] = field(default_factory=lambda: ["log_g"])
    label_norm: Literal["zscore", "minmax"] = "zscore"
    label_stats: dict[str, list[float]] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first inconsistent value."""
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels must be non-empty and unique, got {self.labels}")
        for name in self.labels:
            if name not in LABEL_NAMES:
                raise ConfigError(f"unknown label {name!r}; choose from {LABEL_NAMES}")
        for name, stats in self.label_stats.items():
            if name not in self.labels:
                raise ConfigError(f"label_stats given for {name!r}, which is not in labels")
            if len(stats) != 2 or not stats[1] > 0:
                raise ConfigError(f"label_stats[{name!r}] must be [shift, scale > 0], got {stats}")
        reserved = {"label_names", "label_shift", "label_scale"} & set(self.model.overrides)
        if reserved:
            raise ConfigError(
                f"model.overrides may not set {sorted(reserved)}: use labels / label_norm"
            )
        d, o, t = self.data, self.optim, self.train
        if d.source == "hdf5" and not (d.train_path and d.val_path):
            raise ConfigError("data.source=hdf5 needs data.train_path and data.val_path")
        if d.source == "engine" and (d.train_path or d.val_path):
            raise ConfigError("data.train_path/val_path are for data.source=hdf5 only")
        if d.n_train < 1 or d.n_val < 1 or d.n_exposures < 1:
            raise ConfigError(
                f"need data.n_train, n_val and n_exposures >= 1, got {d.n_train}, {d.n_val}, "
                f"{d.n_exposures}"
            )
        if d.source == "engine" and d.noise_level != 1:
            raise ConfigError(
                "data.noise_level applies to hdf5 shards; the engine's spectra carry their own "
                "noise (set its depth with data.n_exposures)"
            )
        if d.prior:
            self._validate_prior()
        if d.effects:
            self._validate_effects()
        if d.teacher_grid is not None:
            self._validate_teacher()
        if d.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {d.num_workers}")
        if d.noise_level < 0:
            raise ConfigError(f"data.noise_level must be >= 0, got {d.noise_level}")
        if not o.lr > 0 or not 0 <= o.eta_min <= o.lr:
            raise ConfigError(f"need optim.lr > 0 and 0 <= eta_min <= lr, got {o.lr}, {o.eta_min}")
        if o.weight_decay < 0 or o.warmup_steps < 0 or len(o.betas) != 2:
            raise ConfigError(
                f"need weight_decay >= 0, warmup_steps >= 0 and two betas, got {o.weight_decay},"
                f" {o.warmup_steps}, {o.betas}"
            )
        if o.clip_grad_norm is not None and not o.clip_grad_norm > 0:
            raise ConfigError(f"optim.clip_grad_norm must be > 0 or null, got {o.clip_grad_norm}")
        if t.epochs < 1 or t.batch_size < 1:
            raise ConfigError(
                f"need train.epochs >= 1 and train.batch_size >= 1, got {t.epochs} and "
                f"{t.batch_size}"
            )
        if (
            t.log_every < 1
            or t.checkpoint_every < 0
            or t.max_steps < 0
            or t.max_cpu_minutes < 0
            or t.keep_checkpoints < 1
        ):
            raise ConfigError(
                "need train.log_every >= 1, checkpoint_every >= 0, max_steps >= 0, "
                "max_cpu_minutes >= 0, keep_checkpoints >= 1"
            )
        if t.ema_decay is not None and not 0 < t.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in (0, 1) or null, got {t.ema_decay}")
        if t.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {t.device!r}")
        head = self.model.overrides.get("head", "point")
        if t.sigma_grad == "head" and t.loss not in GAUSSIAN_LOSSES:
            raise ConfigError(f"train.sigma_grad=head needs a Gaussian loss, got {t.loss!r}")
        if (t.loss in GAUSSIAN_LOSSES) != (head == "gaussian"):
            raise ConfigError(
                f"train.loss={t.loss!r} does not fit model head {head!r}: {GAUSSIAN_LOSSES} "
                "train a gaussian head (set model.overrides.head=gaussian), mse / l1 a point head"
            )

    def _validate_effects(self) -> None:
        """``data.effects``: what :meth:`training.engine.effects.Effects.from_dict` reads."""
        from training.engine.effects import Effects

        d = self.data
        if d.source != "engine":
            raise ConfigError(
                "data.effects are the engine's (data.source=engine); shards carry theirs"
            )
        if d.teacher_grid is not None:
            raise ConfigError("data.teacher_grid's posterior is of ideal spectra: no data.effects")
        try:
            effects = Effects.from_dict(d.effects)
        except (TypeError, ValueError, ImportError) as err:
            raise ConfigError(f"data.effects: {err}") from err
        if not isinstance(d.effects, dict):  # "default": what it means in this version
            d.effects = effects.to_dict()

    def _validate_prior(self) -> None:
        """``data.prior``: keys and values that the engine's :class:`Prior` takes."""
        from training.engine.simulate import Prior

        prior = self.data.prior
        allowed = [k for k in inspect.signature(Prior).parameters if k != "self"]
        unknown = sorted(set(prior) - set(allowed))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {[f'data.prior.{k}' for k in unknown]}; data.prior takes {allowed}"
            )
        try:
            with warnings.catch_warnings():  # the engine says it again when it builds the prior
                warnings.simplefilter("ignore", UserWarning)
                Prior(**prior)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.prior: {err}") from err

    def _validate_teacher(self) -> None:
        d, loss = self.data, self.train.loss
        grid = d.teacher_grid
        if len(grid) != 3 or not all(g >= 2 for g in grid):
            raise ConfigError(f"data.teacher_grid must be 3 ints >= 2 (cells per label): {grid}")
        if d.source != "engine" or d.prior.get("rv") is not None:
            raise ConfigError(
                "data.teacher_grid needs data.source=engine with no radial velocity in "
                "data.prior: the grid posterior is over the emulator's rest-frame spectra"
            )
        if loss not in MEAN_TARGET_LOSSES:
            raise ConfigError(
                f"data.teacher_grid needs a train.loss in {MEAN_TARGET_LOSSES} (a mean trained "
                f"by squared error alone), got {loss!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build and validate a config from a nested dict; unknown keys raise ConfigError.

        A key renamed since (:data:`RENAMED_KEYS`) is read under its new name, so that a
        checkpoint written before the rename still resumes.
        """
        return _build(cls, rename_keys(data), "")


#: Config keys renamed since checkpoints were first written: old dotted path → new.
RENAMED_KEYS = {"data.benchmark_val": "data.val_set"}


def rename_keys(data: Any) -> Any:
    """A copy of the run-config dict ``data`` with the keys of :data:`RENAMED_KEYS` renamed.

    Raises
    ------
    ConfigError
        If ``data`` holds a key under both names, with different values.
    """
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    for old, new in RENAMED_KEYS.items():
        (section, old_key), (_, new_key) = old.split("."), new.split(".")
        part = data.get(section)
        if not isinstance(part, dict) or old_key not in part:
            continue
        value = part.pop(old_key)
        if part.setdefault(new_key, value) != value:
            raise ConfigError(f"{old} (the old name of {new}) and {new} differ")
    return data


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data`` with strict key and type checks."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {[f'{where}{k}' for k in unknown]}; "
            f"{where or 'top level'} takes {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'config'}: {err}") from err


def _describe(hint: Any) -> str:
    """How an error message names type ``hint``: ``bool``, ``'auto'`` …"""
    if typing.get_origin(hint) is Literal:
        return " or ".join(repr(v) for v in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against type ``hint`` (ints are accepted for floats)."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        errors = []
        for arg in candidates:
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        kinds = " or ".join(_describe(a) for a in candidates)
        raise ConfigError(f"{where} must be {kinds}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and not isinstance(value, bool) and isinstance(value, int | float | str):
        # YAML 1.1 reads exponents without a dot (``1e-3``) as strings.
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return number
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict, in place.

    Raises
    ------
    ConfigError
        If an override has no ``=`` or an empty key. Unknown keys are caught when the
        result is built into a :class:`RunConfig`.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML recipe (a file, or the name of one in ``training/configs`` such as ``"paper"``)
    and apply overrides.

    Parameters
    ----------
    path : str, pathlib.Path or None
        A YAML file, a config name from ``training/configs``, or None for the defaults.
    overrides : list of str, optional
        ``key.sub=value`` strings applied after the file.

    Returns
    -------
    RunConfig
        The validated configuration.
    """
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file() and (CONFIGS_DIR / f"{path}.yaml").is_file():
            file = CONFIGS_DIR / f"{path}.yaml"
        if not file.is_file():
            names = sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))
            raise ConfigError(
                f"no config file {path!r} (and no config of that name in training/configs: {names})"
            )
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{file} must hold a YAML mapping at the top level")
    return RunConfig.from_dict(apply_overrides(data, list(overrides or [])))
