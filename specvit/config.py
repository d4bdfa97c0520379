"""`SpecViTConfig`: one JSON-serialisable description of a SpecViT model."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from specvit.instrument.grid import PFS_MR, WavelengthGrid

__all__ = ["ModelDomain", "SpecViTConfig"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "tokenizer": ("c1d", "sw"),
    "pos_embed": ("learned", "sinusoidal", "wavelength"),
    "input_channels": ("flux", "flux+inverr", "flux+lnsnr"),
    "input_norm": ("median", "continuum", "none"),
    "head": ("point", "gaussian"),
    "pool": ("cls", "mean"),
    "wave_medium": ("vacuum", "air"),
}

#: Keys of older config files that are read and dropped: specvit 0.1.0.dev0 stored the training
#: run (recipe, validation metrics, step) in ``extra``; it now lives in ``training_args.json``.
_LEGACY_KEYS = ("extra",)
#: Keys of development snapshots that are dropped when empty (a σ power law in S/N, replaced by
#: the ``sigma_snr_knots`` table); a non-empty one is refused.
_LEGACY_EMPTY_KEYS = ("sigma_snr_slope", "sigma_snr_range")


def _range(value: Any, name: str) -> tuple[float, float]:
    """A finite ``(low, high)`` pair with ``low <= high``, or a ``ValueError`` naming it."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"ModelDomain.{name} must be a [low, high] pair, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"ModelDomain.{name} needs finite low <= high, got {value!r}")
    return low, high


@dataclass(frozen=True)
class ModelDomain:
    """What a model was trained on: the spectra it can be trusted with.

    Stored in ``config.json`` as the ``domain`` key (strict JSON: unknown keys are rejected).
    :func:`specvit.predict` reads it for the ``OUTSIDE_PRIOR`` and ``RV_OUTSIDE_TRAINING``
    flags; a model without a domain gets neither (the table's metadata says so).

    Parameters
    ----------
    labels : dict of str to (float, float)
        The training prior's box: ``{label: [low, high]}`` for every predicted label (more
        labels are allowed, e.g. all three the engine draws), in the label's unit.
    mag : (float, float) or None
        HSC-i AB magnitude range of the training spectra; None when unknown.
    rv : (float, float)
        Radial velocities (km/s) of the training spectra; ``[0, 0]``: all in the rest frame.
    frame : {"rest", "observed"}
        The frame the model expects spectra in: ``"rest"`` (shift spectra to the star's rest
        frame first; ``rv`` is then ``[0, 0]`` or a small residual range) or ``"observed"``
        (trained on spectra moving within ``rv``). The wavelength medium is the config's
        ``wave_medium`` (one home for it).
    sigma_scale : (float, float)
        Range of the factor between the σ the training spectra reported and their true noise
        (the data engine's σ-scale effect; ``[1, 1]``: σ always right). The emulator fit's χ²
        test of :mod:`specvit.inference.physics` allows σ to be too small by the lower end: a
        model trained on such spectra is not put at risk by it.
    effects : tuple of str
        The real-data effects of the data engine in the training spectra (``training.engine
        .effects`` names, e.g. ``"cosmic_rays"``); empty for ideal spectra. Where it holds
        ``"cosmic_rays"`` or ``"sky"``, the emulator fit leaves out pixels more than 5σ above
        the spectrum's continuum (spikes the model was trained to ignore).
    """

    labels: dict[str, tuple[float, float]]
    mag: tuple[float, float] | None = None
    rv: tuple[float, float] = (0.0, 0.0)
    frame: Literal["rest", "observed"] = "rest"
    sigma_scale: tuple[float, float] = (1.0, 1.0)
    effects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.labels, dict) or not self.labels:
            raise ValueError(f"ModelDomain.labels must be a non-empty dict, got {self.labels!r}")
        boxes = {str(k): _range(v, f"labels[{k!r}]") for k, v in self.labels.items()}
        object.__setattr__(self, "labels", boxes)
        object.__setattr__(self, "mag", None if self.mag is None else _range(self.mag, "mag"))
        object.__setattr__(self, "rv", _range(self.rv, "rv"))
        object.__setattr__(self, "sigma_scale", _range(self.sigma_scale, "sigma_scale"))
        if not self.sigma_scale[0] > 0:
            raise ValueError(f"ModelDomain.sigma_scale must be > 0, got {self.sigma_scale!r}")
        if isinstance(self.effects, str) or not all(isinstance(e, str) for e in self.effects):
            raise ValueError(f"ModelDomain.effects must be a list of names, got {self.effects!r}")
        object.__setattr__(self, "effects", tuple(self.effects))
        if self.frame not in ("rest", "observed"):
            raise ValueError(f"ModelDomain.frame must be 'rest' or 'observed', got {self.frame!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDomain:
        """Build a domain from its JSON form, rejecting unknown keys."""
        if not isinstance(data, dict):
            raise ValueError(f"SpecViTConfig.domain must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelDomain key(s) {unknown}; known keys: {sorted(known)}")
        if "labels" not in data:
            raise ValueError("ModelDomain needs 'labels': the training prior box per label")
        return cls(**data)


@dataclass
class SpecViTConfig:
    """Everything needed to build a SpecViT model and to feed it correctly.

    The config is stored as ``config.json`` beside the weights, so a model always travels with
    the wavelength grid, input normalisation and label statistics it was trained with. It holds
    what building and running the model needs, nothing about how it was trained (that is the
    model folder's ``training_args.json`` and model card), and it is strict JSON: every number
    is finite.

    Parameters
    ----------
    input_length : int
        Number of pixels of the input spectrum.
    wave_start, wave_stop : float
        Centre wavelengths (Å) of the first and last pixel of the linear grid the model expects.
    wave_medium : {"vacuum", "air"}
        Medium of ``wave_start`` / ``wave_stop``. These four fields are the
        :class:`~specvit.instrument.WavelengthGrid` :attr:`wavelength_grid` (stored flat, as
        ``config.json`` always has); read the grid through it.
    label_names : tuple of str
        Predicted labels, in output order (e.g. ``("log_g",)`` or ``("T_eff", "log_g", "M_H")``).
    label_shift, label_scale : tuple of float
        Label normalisation: ``physical = shift + scale * normalised``. A z-score uses
        (mean, std); min-max uses (min, max - min).
    input_channels : {"flux", "flux+inverr", "flux+lnsnr"}
        ``"flux"``: one channel, the normalised flux. ``"flux+inverr"``: a second channel holding
        ``median_flux / σ`` (the S/N a unit-continuum pixel would have), 0 where masked.
        ``"flux+lnsnr"``: the second channel is ``ln(1 + median_flux / σ)``, the same
        information compressed to ≈ 0.7–4.6 over S/N 1–100, and 0 (σ = ∞) where masked.
    input_norm : {"median", "continuum", "none"}
        ``"median"`` divides flux and σ by each spectrum's median valid flux and feeds
        ``flux/median − 1``, so the input does not depend on the flux unit or the star's
        brightness. ``"continuum"`` divides them, pixel by pixel, by a weighted Legendre fit of
        order ``continuum_order`` to the flux (:func:`specvit.continuum.fit_continuum`) and
        feeds ``flux/continuum − 1``: nor does it depend on a smooth multiplicative curve
        (flux calibration, extinction, f_ν or f_λ); its S/N channel keeps the per-pixel S/N's
        level and structure but not its smooth trend (which follows the reddened continuum).
        ``"none"`` feeds flux as is.
    continuum_order : int
        Highest Legendre order of the ``"continuum"`` normalisation (unused by the others).
    rest_frame : bool
        Whether the model's input is shifted to each star's rest frame first
        (:func:`specvit.preprocessing.prepare`: the velocity given, or measured by
        :func:`specvit.velocity.measure_rv`); such a model takes observed-frame spectra.
    tokenizer : {"c1d", "sw"}
        ``"c1d"``: Conv1d patch embedding. ``"sw"``: unfold into windows + Linear.
    patch_size, patch_stride : int
        Window length and step in pixels; ``patch_stride < patch_size`` overlaps patches.
    embed_dim, depth, num_heads : int
        Transformer width, number of encoder layers and attention heads.
    mlp_ratio : float
        Hidden width of the feed-forward block as a multiple of ``embed_dim``.
    dropout, attn_dropout : float
        Dropout after embeddings / inside residual branches, and on attention weights.
    pos_embed : {"learned", "sinusoidal", "wavelength"}
        Positional encoding; ``"wavelength"`` is a fixed sinusoidal code of each patch's central
        wavelength (in Å), so a token carries where in the spectrum it sits physically.
    pool : {"cls", "mean"}
        Read the head from a CLS token or from the mean of the patch tokens.
    head : {"point", "gaussian"}
        ``"point"``: one value per label. ``"gaussian"``: mean and log σ per label.
    sigma_hidden : int
        Hidden width of a Gaussian head's σ network (log σ = Linear → GELU → Linear of the
        pooled features, :class:`specvit.layers.RegressionHead`); 0 (default): log σ from the
        same linear map as the mean.
    sigma_scale : tuple of float
        Calibration of a Gaussian head's σ: one factor per label that multiplies the predicted
        σ, independent of S/N (``training.evaluation.calibration.fit_sigma_scale``); empty for none.
    sigma_snr_knots : tuple of float
        S/N dependence of that calibration: increasing median S/N values at which
        ``sigma_snr_factors`` are given; σ is multiplied by the factor interpolated linearly in
        ln S/N (held constant beyond the first and last knot, so a spectrum with S/N ≤ 0 gets
        the first knot's factor, and one with NaN S/N a NaN σ); empty for none (then
        :meth:`SpecViT.to_physical` needs no S/N).
    sigma_snr_factors : tuple of tuple of float
        One row per label of ``len(sigma_snr_knots)`` factors > 0 (required with knots).
    domain : ModelDomain or None
        What the model was trained on (prior box, magnitudes, radial velocities, frame); see
        :class:`ModelDomain`. Filled by the trainer; None for a model that does not say.
    """

    input_length: int = PFS_MR.num
    wave_start: float = PFS_MR.start
    wave_stop: float = PFS_MR.stop
    wave_medium: Literal["vacuum", "air"] = PFS_MR.medium
    label_names: tuple[str, ...] = ("log_g",)
    label_shift: tuple[float, ...] = (0.0,)
    label_scale: tuple[float, ...] = (1.0,)
    input_channels: Literal["flux", "flux+inverr", "flux+lnsnr"] = "flux"
    input_norm: Literal["median", "continuum", "none"] = "median"
    continuum_order: int = 5
    rest_frame: bool = False
    tokenizer: Literal["c1d", "sw"] = "c1d"
    patch_size: int = 16
    patch_stride: int = 16
    embed_dim: int = 256
    depth: int = 6
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    attn_dropout: float = 0.0
    pos_embed: Literal["learned", "sinusoidal", "wavelength"] = "learned"
    pool: Literal["cls", "mean"] = "cls"
    head: Literal["point", "gaussian"] = "point"
    sigma_hidden: int = 0
    sigma_scale: tuple[float, ...] = ()
    sigma_snr_knots: tuple[float, ...] = ()
    sigma_snr_factors: tuple[tuple[float, ...], ...] = ()
    domain: ModelDomain | None = None

    def __post_init__(self) -> None:
        for name in (
            "label_names",
            "label_shift",
            "label_scale",
            "sigma_scale",
            "sigma_snr_knots",
        ):
            setattr(self, name, tuple(getattr(self, name)))
        if self.domain is not None and not isinstance(self.domain, ModelDomain):
            self.domain = ModelDomain.from_dict(self.domain)
        self.label_shift = tuple(float(v) for v in self.label_shift)
        self.label_scale = tuple(float(v) for v in self.label_scale)
        for name in ("sigma_scale", "sigma_snr_knots"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        self.sigma_snr_factors = tuple(
            tuple(float(v) for v in row) for row in self.sigma_snr_factors
        )
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"SpecViTConfig.{name} must be one of {allowed}, got {value!r}")
        for name in (
            "input_length",
            "patch_size",
            "patch_stride",
            "embed_dim",
            "depth",
            "num_heads",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SpecViTConfig.{name} must be a positive integer, got {value!r}")
        order = self.continuum_order
        if not isinstance(order, int) or isinstance(order, bool) or not 0 <= order <= 20:
            raise ValueError(
                f"SpecViTConfig.continuum_order must be an integer in 0–20, got {order!r}"
            )
        if not isinstance(self.rest_frame, bool):
            raise ValueError(
                f"SpecViTConfig.rest_frame must be true or false, got {self.rest_frame!r}"
            )
        if self.patch_size > self.input_length:
            raise ValueError(
                f"patch_size={self.patch_size} exceeds input_length={self.input_length}"
            )
        if self.patch_stride > self.patch_size:
            raise ValueError(
                f"patch_stride={self.patch_stride} > patch_size={self.patch_size} would skip pixels"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.pos_embed != "learned" and self.embed_dim % 2:
            raise ValueError(f"{self.pos_embed!r} positional encoding needs an even embed_dim")
        if not self.wave_stop > self.wave_start:
            raise ValueError(f"wave_stop={self.wave_stop} must exceed wave_start={self.wave_start}")
        n = len(self.label_names)
        if n == 0 or len(set(self.label_names)) != n:
            raise ValueError(f"label_names must be non-empty and unique, got {self.label_names}")
        if len(self.label_shift) != n or len(self.label_scale) != n:
            raise ValueError(
                f"label_shift ({len(self.label_shift)}) and label_scale ({len(self.label_scale)}) "
                f"need one entry per label ({n}: {self.label_names})"
            )
        if any(not s > 0 for s in self.label_scale):
            raise ValueError(f"label_scale entries must be > 0, got {self.label_scale}")
        numbers = {
            "wave_start": (self.wave_start,),
            "wave_stop": (self.wave_stop,),
            "label_shift": self.label_shift,
            "label_scale": self.label_scale,
            "mlp_ratio": (self.mlp_ratio,),
        }
        for name, values in numbers.items():
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"SpecViTConfig.{name} must be finite, got {getattr(self, name)}")
        hidden = self.sigma_hidden
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 0:
            raise ValueError(f"SpecViTConfig.sigma_hidden must be an integer ≥ 0, got {hidden!r}")
        if hidden and self.head != "gaussian":
            raise ValueError(f"sigma_hidden={hidden} needs a gaussian head, not {self.head!r}")
        if self.sigma_scale:
            if self.head != "gaussian" or len(self.sigma_scale) != n:
                raise ValueError(
                    f"sigma_scale {self.sigma_scale} needs a gaussian head and one factor per "
                    f"label ({n}: {self.label_names}), or () for none"
                )
            if not all(0 < s < float("inf") for s in self.sigma_scale):
                raise ValueError(f"sigma_scale entries must be finite and > 0: {self.sigma_scale}")
        if self.sigma_snr_knots or self.sigma_snr_factors:
            knots, rows = self.sigma_snr_knots, self.sigma_snr_factors
            if (
                self.head != "gaussian"
                or len(knots) < 2
                or not all(0 < a < b < math.inf for a, b in itertools.pairwise(knots))
                or len(rows) != n
                or any(len(row) != len(knots) for row in rows)
                or not all(0 < v < math.inf for row in rows for v in row)
            ):
                raise ValueError(
                    f"sigma_snr_knots {knots} and sigma_snr_factors {rows} need a gaussian head, "
                    f"at least 2 increasing finite knots > 0 and one row per label ({n}: "
                    f"{self.label_names}) of one finite factor > 0 per knot"
                )
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(
                    f"SpecViTConfig.{name} must be in [0, 1), got {getattr(self, name)}"
                )
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.domain is not None:
            missing = [n for n in self.label_names if n not in self.domain.labels]
            if missing:
                raise ValueError(f"SpecViTConfig.domain.labels has no prior box for {missing}")

    # ------------------------------------------------------------------ derived
    @property
    def wavelength_grid(self) -> WavelengthGrid:
        """The linear grid the model expects: ``wave_start``–``wave_stop`` (Å) in
        ``input_length`` pixels, in ``wave_medium``."""
        return WavelengthGrid(self.wave_start, self.wave_stop, self.input_length, self.wave_medium)

    @property
    def num_labels(self) -> int:
        """Number of predicted labels."""
        return len(self.label_names)

    @property
    def in_chans(self) -> int:
        """Number of input channels the model takes."""
        return 1 if self.input_channels == "flux" else 2

    @property
    def num_patches(self) -> int:
        """Number of patch tokens (without the CLS token)."""
        return (self.input_length - self.patch_size) // self.patch_stride + 1

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), allow_nan=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpecViTConfig:
        """Build a config from a dict, rejecting keys it does not know.

        The ``extra`` key of configs written by specvit 0.1.0.dev0 (the training record, which
        the model never read) is accepted and dropped, and so are the empty ``sigma_snr_slope``
        / ``sigma_snr_range`` of later development snapshots (checkpoints of runs that started
        then).

        Raises
        ------
        ValueError
            If ``data`` holds an unknown key (a typo, or a config from a newer specvit), or a
            σ power law in S/N (``sigma_snr_slope``) that this version no longer applies.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a SpecViT config must be a dict, got {type(data).__name__}")
        power_law = [k for k in _LEGACY_EMPTY_KEYS if data.get(k)]
        if power_law:
            raise ValueError(
                f"this config holds {power_law}: a σ power law in S/N from a development "
                "snapshot, which this specvit no longer applies; recalibrate the model with "
                "training/publish.py (σ factors on S/N knots: sigma_snr_knots)"
            )
        data = {k: v for k, v in data.items() if k not in _LEGACY_KEYS + _LEGACY_EMPTY_KEYS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown SpecViTConfig key(s) {unknown}; known keys: {sorted(known)}. "
                "Was this config written by a newer specvit?"
            )
        return cls(**data)

    def to_json(self, path: str | Path) -> None:
        """Write the config to ``path`` as strict JSON (sorted keys, no NaN)."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> SpecViTConfig:
        """Read a config written by :meth:`to_json` (or ``save_pretrained``).

        Older files whose ``extra`` held bare ``NaN`` tokens (not JSON) are read too.
        """
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def replace(self, **changes: Any) -> SpecViTConfig:
        """A copy with ``changes`` applied (validated; unknown keys rejected)."""
        return self.from_dict({**self.to_dict(), **changes})
