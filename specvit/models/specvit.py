"""SpecViT: a Vision Transformer for 1-D spectra, with Hub-format (safetensors) weights."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from torch import nn

from specvit.config import SpecViTConfig
from specvit.layers import (
    EncoderBlock,
    LearnedPosEmbed,
    RegressionHead,
    SinusoidalPosEmbed,
    build_patch_embed,
)

__all__ = [
    "MAX_BUFFER_BYTES",
    "SpecViT",
    "UntrainedModelWarning",
    "WeightsMismatchError",
    "read_weights_header",
]

#: The most memory (bytes) a config may ask for beyond its weights: fixed buffers such as a
#: sinusoidal positional code, which no tensor in ``model.safetensors`` bounds (1 GiB; the
#: paper's model needs 0.3 MB).
MAX_BUFFER_BYTES = 2**30

#: How safetensors names each torch dtype (the ``dtype`` field of a file's header).
_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}

#: The ``model.safetensors`` metadata that marks weights saved before any training (a fresh
#: :func:`~specvit.create_model`), so that the model loaded from them says so too.
_UNTRAINED_METADATA = {"specvit_weights": "random initialisation, untrained"}

#: The model card of every saved model. ``heading`` and ``training`` (Markdown sections on how
#: the model was trained) are filled in by ``training/publish.py``.
_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ heading | default("SpecViT") }}

A [specvit](https://github.com/specvit/specvit) Vision Transformer that infers stellar parameters
from 1-D spectra. Load it and predict with

```python
import specvit
model = specvit.load("<this repo or folder>", revision="<commit>")
table = specvit.predict(flux, error, model=model)
```

{% if untrained -%}
**Untrained.** These weights are a random initialisation (`specvit.create_model`), saved before
any training: predictions with them are random numbers, and `specvit.predict` warns
(`UntrainedModelWarning`). `config.json` holds the wavelength grid, the input normalisation and
the label normalisation the architecture was configured with, not statistics of a training set.
{% else -%}
`config.json` holds what prediction needs: the wavelength grid, the input normalisation and the
label statistics the model was trained with. How it was trained is in `training_args.json`
(when the folder has one) and below.
{%- endif %}
{{ training | default("") }}"""


class WeightsMismatchError(ValueError):
    """The weights on disk do not match the model that the config describes."""


class UntrainedModelWarning(UserWarning):
    """A model predicts with the random weights of a fresh initialisation (never trained)."""


def read_weights_header(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name, shape and dtype of every tensor in a safetensors file, from its header only.

    Nothing but the header is read, so a config can be checked against the weights before any
    model is built.

    Parameters
    ----------
    path : str or pathlib.Path
        A ``model.safetensors`` file.

    Returns
    -------
    dict
        ``{name: (shape, dtype)}`` with safetensors' dtype names (``"F32"``, ``"I8"`` …).

    Raises
    ------
    ValueError
        If the file is not a valid safetensors file (truncated, corrupted, a pickle).
    """
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}
            return {k: (tuple(v.get_shape()), v.get_dtype()) for k, v in slices.items()}
    except (safetensors.SafetensorError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a valid safetensors file ({exc})") from exc


class SpecViT(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="specvit",
    tags=["astronomy", "spectroscopy", "stellar-parameters", "vision-transformer"],
    license="bsd-3-clause",
    repo_url="https://github.com/specvit/specvit",
    model_card_template=_CARD_TEMPLATE,
):
    """Vision Transformer regressor for 1-D spectra.

    Tokenizer (C1D or SW patches) → positional encoding → optional CLS token → pre-LN encoder
    → LayerNorm → regression head, all configured by one :class:`~specvit.SpecViTConfig`.

    Parameters
    ----------
    config : SpecViTConfig
        The model description (saved as ``config.json`` by :meth:`save_pretrained`).

    Notes
    -----
    ``forward`` works in the *normalised* spaces the model was trained in: its input is the
    output of :func:`specvit.preprocessing.model_input` (flux divided by its median, and
    optionally a ``median/σ`` channel), and its output is (B, num_labels, K) with K = 1 (the
    normalised mean) for a point head or K = 2 (normalised mean, log of the normalised σ) for a
    Gaussian head. :meth:`to_physical` turns that into labels in their physical units.
    """

    def __init__(self, config: SpecViTConfig) -> None:
        super().__init__()
        if not isinstance(config, SpecViTConfig):
            raise TypeError(f"config must be a SpecViTConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.patch_embed = build_patch_embed(
            c.tokenizer, c.in_chans, c.embed_dim, c.patch_size, c.patch_stride
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim)) if c.pool == "cls" else None
        num_tokens = c.num_patches + (1 if c.pool == "cls" else 0)
        if c.pos_embed == "learned":
            self.pos_embed: nn.Module = LearnedPosEmbed(num_tokens, c.embed_dim)
        else:
            positions = self._patch_positions()
            self.pos_embed = SinusoidalPosEmbed(positions, c.embed_dim, max_period=1.0e4)
        self.pos_drop = nn.Dropout(c.dropout)
        self.blocks = nn.Sequential(
            *[
                EncoderBlock(c.embed_dim, c.num_heads, c.mlp_ratio, c.dropout, c.attn_dropout)
                for _ in range(c.depth)
            ]
        )
        self.norm = nn.LayerNorm(c.embed_dim)
        self.head = RegressionHead(
            c.embed_dim, c.num_labels, gaussian=c.head == "gaussian", sigma_hidden=c.sigma_hidden
        )
        self.apply(_init_weights)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.register_buffer(
            "_label_shift", torch.tensor(c.label_shift, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "_label_scale", torch.tensor(c.label_scale, dtype=torch.float32), persistent=False
        )
        #: Where the weights came from, set by :func:`specvit.load`: ``{"name": …, "revision":
        #: …}`` (the folder, bundled name or Hub repo id, and the Hub commit, "" for a folder);
        #: None for a model built here.
        self.origin: dict[str, str] | None = None
        self._initial_weights = self._fingerprint()

    # ------------------------------------------------------------------ geometry
    def _patch_positions(self) -> torch.Tensor:
        """Positions fed to a fixed positional code: token index, or central wavelength (Å)."""
        c = self.config
        index = torch.arange(c.num_patches, dtype=torch.float64)
        if c.pos_embed == "sinusoidal":
            return index
        centre_pixel = index * c.patch_stride + (c.patch_size - 1) / 2
        return c.wavelength_grid.wavelength_at(centre_pixel)

    @property
    def wavelength(self) -> np.ndarray:
        """Pixel-centre wavelengths (Å, in ``config.wave_medium``) the model expects, (L,)."""
        return self.config.wavelength_grid.wavelength()

    # ------------------------------------------------------------------ forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a normalised input (B, C, L) (or (B, L) with one channel) to (B, D)."""
        c = self.config
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[1] != c.in_chans or x.shape[2] != c.input_length:
            raise ValueError(
                f"expected input of shape (B, {c.in_chans}, {c.input_length}), got {tuple(x.shape)}"
            )
        tokens = self.patch_embed(x)
        if c.pos_embed != "learned":
            tokens = self.pos_embed(tokens)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        if c.pos_embed == "learned":
            tokens = self.pos_embed(tokens)
        tokens = self.norm(self.blocks(self.pos_drop(tokens)))
        return tokens[:, 0] if self.cls_token is not None else tokens.mean(dim=1)

    def forward(self, x: torch.Tensor, *, detach_sigma: bool = False) -> torch.Tensor:
        """Predict normalised labels.

        Parameters
        ----------
        x : torch.Tensor
            Normalised input, (B, C, L) or (B, L) for one channel.
        detach_sigma : bool
            Training only (the values are the same): a Gaussian head's log σ is computed from
            detached features, so its loss trains the head but not the encoder.

        Returns
        -------
        torch.Tensor
            (B, num_labels, K): K = 1 (mean) for a point head, K = 2 (mean, log σ) for a
            Gaussian head, in normalised label units.
        """
        return self.head(self.forward_features(x), detach_sigma=detach_sigma)

    def to_physical(
        self, output: torch.Tensor, snr: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Turn :meth:`forward` output into physical labels.

        Parameters
        ----------
        output : torch.Tensor
            :meth:`forward`'s output.
        snr : torch.Tensor, optional
            (B,) median S/N of each spectrum (:func:`specvit.preprocessing.median_snr`); needed
            by a σ calibration that depends on it (``config.sigma_snr_knots``).

        Returns
        -------
        mean : torch.Tensor
            (B, num_labels) in each label's unit (e.g. dex for log g, K for T_eff).
        sigma : torch.Tensor or None
            (B, num_labels) 1σ in the same units for a Gaussian head (times the config's
            ``sigma_scale`` and ``sigma_snr_factors`` calibration, if any), else None.

        Raises
        ------
        ValueError
            If the calibration depends on S/N and ``snr`` is None.
        """
        shift = self._label_shift.to(output.device, torch.float32)
        scale = self._label_scale.to(output.device, torch.float32)
        out = output.float()
        mean = shift + scale * out[..., 0]
        sigma = scale * out[..., 1].exp() if out.shape[-1] == 2 else None
        config = self.config
        if sigma is not None and config.sigma_scale:
            sigma = sigma * torch.tensor(config.sigma_scale, device=sigma.device)
        if sigma is not None and config.sigma_snr_knots:
            if snr is None:
                raise ValueError("this model's σ calibration depends on S/N: pass snr")
            sigma = sigma * _snr_factor(config, snr.to(sigma.device))
        return mean, sigma

    def normalize_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Physical labels (B, num_labels) → the normalised space the model predicts in."""
        shift = self._label_shift.to(labels.device, labels.dtype)
        scale = self._label_scale.to(labels.device, labels.dtype)
        return (labels - shift) / scale

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (trainable ones only when asked)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ provenance
    def _fingerprint(self) -> bytes | None:
        """A digest of every parameter's bytes: any training step or loaded state changes it
        (None for a model on the ``meta`` device, which has no values)."""
        params = list(self.parameters())
        if any(p.is_meta for p in params):
            return None
        digest = hashlib.blake2b(digest_size=16)
        for p in params:
            digest.update(p.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy())
        return digest.digest()

    @property
    def untrained(self) -> bool:
        """Whether the weights are still the random initialisation.

        True for a model fresh from :func:`~specvit.create_model` (or ``SpecViT(config)``), and
        for one loaded from a folder its ``save_pretrained`` wrote, until its weights change (an
        optimiser step, ``load_state_dict``). :func:`specvit.predict` warns
        (:class:`UntrainedModelWarning`) for such a model and its model card says so.
        """
        return self._initial_weights is not None and self._fingerprint() == self._initial_weights

    def _weights_metadata(self) -> dict[str, str] | None:
        """The metadata :meth:`save_pretrained` writes into ``model.safetensors``."""
        return dict(_UNTRAINED_METADATA) if self.untrained else None

    def weights_sha256(self) -> str:
        """SHA-256 (hex) of the weights as :meth:`save_pretrained` writes ``model.safetensors``.

        For a folder ``save_pretrained`` (or ``python -m training publish``) wrote, it equals
        ``sha256sum model.safetensors``; :func:`specvit.predict` records it in the table's
        metadata (``weights_sha256``).
        """
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        data = safetensors.torch.save(state, metadata=self._weights_metadata())
        return hashlib.sha256(data).hexdigest()

    def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
        """The model card (``README.md``); an :attr:`untrained` model's card says so."""
        kwargs.setdefault("untrained", self.untrained)
        return super().generate_model_card(*args, **kwargs)

    # ------------------------------------------------------------------ Hub format
    # ``_save_pretrained`` / ``_from_pretrained`` are the hooks ModelHubMixin subclasses
    # implement (huggingface_hub's integration guide); the tested version range is bounded in
    # pyproject.toml.
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``model.safetensors`` and ``config.json`` (strict JSON, :meth:`to_json`).

        The weights of an :attr:`untrained` model carry a metadata entry saying so.
        """
        path = Path(save_directory) / constants.SAFETENSORS_SINGLE_FILE
        safetensors.torch.save_model(self, str(path), metadata=self._weights_metadata())
        self.config.to_json(Path(save_directory) / constants.CONFIG_NAME)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        **model_kwargs: Any,
    ) -> SpecViT:
        """Build the model from its config and load ``model.safetensors`` strictly.

        The mixin hands over ``config.json`` as a dict (the ``config`` annotation is a string
        here, so it does not decode it); :meth:`SpecViTConfig.from_dict` reads it strictly.
        The config is checked against the weights' header (every name, shape and dtype) on a
        model without memory (the ``meta`` device) before the model is built, so a config that
        does not match its weights never allocates anything.
        """
        hub_kwargs = {
            "revision": revision,
            "cache_dir": cache_dir,
            "force_download": force_download,
            "token": token,
            "local_files_only": local_files_only,
        }
        if "config" not in model_kwargs:
            # The mixin swallows a failed config.json download; surface the Hub's own error.
            if not os.path.isdir(model_id):
                hf_hub_download(repo_id=model_id, filename=constants.CONFIG_NAME, **hub_kwargs)
            raise FileNotFoundError(f"no {constants.CONFIG_NAME} for model {model_id!r}")
        config = model_kwargs.pop("config")
        if not isinstance(config, SpecViTConfig):
            config = SpecViTConfig.from_dict(config)
        filename = constants.SAFETENSORS_SINGLE_FILE
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, filename)
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"no {filename} in {model_id}")
        else:
            weights = hf_hub_download(repo_id=model_id, filename=filename, **hub_kwargs)
        cls._check_against_weights(config, read_weights_header(weights), weights)
        model = cls(config, **model_kwargs)
        model.load_weights(weights, map_location=map_location)
        return model.eval()

    @classmethod
    def _check_against_weights(
        cls, config: SpecViTConfig, header: dict[str, tuple[tuple[int, ...], str]], path: Any
    ) -> None:
        """Raise :class:`WeightsMismatchError` unless ``config`` builds the model in ``header``.

        A depth beyond the file's blocks is refused first (it alone sets how many modules get
        built), then every tensor is compared on a model without memory, then the memory of
        the fixed buffers is bounded (:data:`MAX_BUFFER_BYTES`).
        """
        blocks = {k.split(".")[1] for k in header if k.startswith("blocks.")}
        if config.depth > len(blocks):
            raise WeightsMismatchError(
                f"weights in {path} do not match the model its config describes: config depth "
                f"{config.depth} (the file holds {len(blocks)} encoder blocks)"
            )
        with torch.device("meta"):
            skeleton = cls(config)
        _compare(skeleton.state_dict(), header, path)
        persistent = set(skeleton.state_dict())
        extra = sum(
            b.numel() * b.element_size()
            for name, b in skeleton.named_buffers()
            if name not in persistent
        )
        if extra > MAX_BUFFER_BYTES:
            raise WeightsMismatchError(
                f"weights in {path}: its config asks for {extra / 2**30:.3g} GiB of fixed "
                f"buffers (input_length {config.input_length}), beyond the "
                f"{MAX_BUFFER_BYTES / 2**30:.3g} GiB any real model needs"
            )

    def load_weights(self, path: str | Path, map_location: str | torch.device = "cpu") -> None:
        """Load a safetensors state dict strictly: every name, shape and dtype as the model's.

        The file's header is checked before any tensor is read.

        Raises
        ------
        WeightsMismatchError
            Listing missing keys, unexpected keys, shape mismatches and dtype mismatches
            (e.g. integer weights, which would load silently as integers cast to float).
        ValueError
            If the file is not a valid safetensors file (truncated, corrupted, a pickle).
        """
        _compare(self.state_dict(), read_weights_header(path), path)
        try:
            state = safetensors.torch.load_file(str(path), device=str(map_location))
            with safetensors.safe_open(str(path), framework="pt") as f:
                untrained = (f.metadata() or {}).items() >= _UNTRAINED_METADATA.items()
        except safetensors.SafetensorError as exc:
            raise ValueError(f"{path} is not a valid safetensors file ({exc})") from exc
        self.load_state_dict(state, strict=True)
        self._initial_weights = self._fingerprint() if untrained else None


def _compare(
    expected: dict[str, torch.Tensor], header: dict[str, tuple[tuple[int, ...], str]], path: Any
) -> None:
    """Raise :class:`WeightsMismatchError` listing every name, shape and dtype that differ."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    shapes, dtypes = [], []
    for k in sorted(set(header) & set(expected)):
        (shape, dtype), want = header[k], expected[k]
        if shape != tuple(want.shape):
            shapes.append(f"{k}: file {shape} vs model {tuple(want.shape)}")
        want_dtype = _SAFETENSORS_DTYPES.get(want.dtype, str(want.dtype))
        if dtype != want_dtype:
            dtypes.append(f"{k}: file {dtype} vs model {want_dtype}")
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatches {shapes}")
    if dtypes:
        shown = dtypes[:3] + ([f"… {len(dtypes) - 3} more"] if len(dtypes) > 3 else [])
        problems.append(f"dtype mismatches {shown}")
    if problems:
        raise WeightsMismatchError(
            f"weights in {path} do not match the model its config describes: " + "; ".join(problems)
        )


def _init_weights(module: nn.Module) -> None:
    """Truncated-normal linear/conv weights (std 0.02), zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _snr_factor(config: SpecViTConfig, snr: torch.Tensor) -> torch.Tensor:
    """(B, num_labels) σ factors of the config's S/N table at each spectrum's median S/N.

    Linear in ln S/N between knots, the end factors beyond them (as ``numpy.interp``); in
    float64 on the CPU, so knots that float32 would merge still interpolate.
    """
    s = snr.detach().to("cpu", torch.float64)
    if s.ndim != 1:
        raise ValueError(f"snr must be (B,), one median S/N per spectrum, got {tuple(s.shape)}")
    x = torch.tensor(config.sigma_snr_knots, dtype=torch.float64).log()
    factors = torch.tensor(config.sigma_snr_factors, dtype=torch.float64).T  # (knots, labels)
    s = s.clamp_min(1e-300).log().clamp(x[0], x[-1])  # NaN stays NaN
    hi = torch.searchsorted(x, s.nan_to_num(float(x[0]))).clamp(1, len(x) - 1)
    w = ((s - x[hi - 1]) / (x[hi] - x[hi - 1]))[:, None]
    return (factors[hi - 1] * (1 - w) + factors[hi] * w).to(snr.device, torch.float32)
