"""Private Hub plumbing behind :func:`specvit.load`."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from specvit.models.specvit import SpecViT

__all__ = ["UnpinnedRevisionWarning", "load"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class UnpinnedRevisionWarning(UserWarning):
    """A Hub model was loaded without pinning ``revision`` to a commit hash."""


def load(
    name_or_path: str | Path,
    revision: str | None = None,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
) -> SpecViT:
    """Load a SpecViT model from a local folder, the Hugging Face cache or the Hub.

    The folder (or Hub repo) holds ``config.json`` and ``model.safetensors`` as written by
    :meth:`SpecViT.save_pretrained`. Weights are read only from safetensors, strictly: a
    missing or unexpected key or a wrong shape raises :class:`~specvit.WeightsMismatchError`,
    and an unknown config key raises ``ValueError``.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A local folder, or a Hub repo id ``"owner/name"``.
    revision : str, optional
        Hub revision: pin it to a 40-character commit hash for reproducible and safe
        downloads (a branch or tag also works, with an :class:`UnpinnedRevisionWarning`).
        Ignored for local folders.
    device : str or torch.device
        Where to put the weights.
    cache_dir : str or pathlib.Path, optional
        Hugging Face cache folder (default: the ``HF_HUB_CACHE`` / ``HF_HOME`` setting).
    token : str or bool, optional
        Hub token for private repos.

    Returns
    -------
    SpecViT
        The model in eval mode.

    Notes
    -----
    With ``HF_HUB_OFFLINE=1`` in the environment nothing is downloaded: the model must already
    be in the cache at that revision. ``HF_ENDPOINT`` selects another Hub server.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        model = SpecViT.from_pretrained(path)
    else:
        name = str(name_or_path)
        if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
            raise FileNotFoundError(
                f"{name!r} is neither a model folder (config.json + model.safetensors) "
                "nor a Hub repo id of the form 'owner/name'"
            )
        if revision is None or not _COMMIT.match(revision):
            warnings.warn(
                f"loading {name!r} at revision {revision or 'main'!r}, which can change under "
                "you; pin revision= to a commit hash for reproducible, safe downloads",
                UnpinnedRevisionWarning,
                stacklevel=2,
            )
        model = SpecViT.from_pretrained(name, revision=revision, cache_dir=cache_dir, token=token)
    return model.to(device).eval()
