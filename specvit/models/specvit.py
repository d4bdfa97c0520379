"""SpecViT: a Vision Transformer for 1-D spectra, with Hub-format (safetensors) weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
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

__all__ = ["SpecViT", "WeightsMismatchError"]

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

`config.json` holds what prediction needs: the wavelength grid, the input normalisation and the
label statistics the model was trained with. How it was trained is in `training_args.json`
(when the folder has one) and below.
{{ training | default("") }}"""


class WeightsMismatchError(ValueError):
    """The weights on disk do not match the model that the config describes."""


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
        self.head = RegressionHead(c.embed_dim, c.num_labels, gaussian=c.head == "gaussian")
        self.apply(_init_weights)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.register_buffer(
            "_label_shift", torch.tensor(c.label_shift, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "_label_scale", torch.tensor(c.label_scale, dtype=torch.float32), persistent=False
        )

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

    # ------------------------------------------------------------------ Hub format
    # ``_save_pretrained`` / ``_from_pretrained`` are the hooks ModelHubMixin subclasses
    # implement (huggingface_hub's integration guide); the tested version range is bounded in
    # pyproject.toml.
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``model.safetensors`` and ``config.json`` (strict JSON, :meth:`to_json`)."""
        super()._save_pretrained(save_directory)
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
        model = cls(config, **model_kwargs)
        filename = constants.SAFETENSORS_SINGLE_FILE
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, filename)
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"no {filename} in {model_id}")
        else:
            weights = hf_hub_download(repo_id=model_id, filename=filename, **hub_kwargs)
        model.load_weights(weights, map_location=map_location)
        return model.eval()

    def load_weights(self, path: str | Path, map_location: str | torch.device = "cpu") -> None:
        """Load a safetensors state dict strictly (every key present, every shape equal).

        Raises
        ------
        WeightsMismatchError
            Listing missing keys, unexpected keys and shape mismatches.
        ValueError
            If the file is not a valid safetensors file (truncated, corrupted, a pickle).
        """
        try:
            state = safetensors.torch.load_file(str(path), device=str(map_location))
        except safetensors.SafetensorError as exc:
            raise ValueError(f"{path} is not a valid safetensors file ({exc})") from exc
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        shapes = [
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
            for k in sorted(set(state) & set(expected))
            if state[k].shape != expected[k].shape
        ]
        if missing or unexpected or shapes:
            problems = []
            if missing:
                problems.append(f"missing keys {missing}")
            if unexpected:
                problems.append(f"unexpected keys {unexpected}")
            if shapes:
                problems.append(f"shape mismatches {shapes}")
            raise WeightsMismatchError(
                f"weights in {path} do not match the model its config describes: "
                + "; ".join(problems)
            )
        self.load_state_dict(state, strict=True)


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
