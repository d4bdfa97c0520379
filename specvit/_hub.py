"""Private Hub plumbing behind :func:`specvit.load` and :func:`specvit.list_pretrained`."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from specvit.models.specvit import SpecViT

__all__ = ["PRETRAINED_DIR", "UnpinnedRevisionWarning", "list_pretrained", "load"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")

#: The folder of the trained models shipped inside the package (one model folder each), read
#: with no network call; :func:`list_pretrained` names them.
PRETRAINED_DIR: Path = Path(__file__).resolve().parent / "pretrained"


class UnpinnedRevisionWarning(UserWarning):
    """A Hub model was loaded without pinning ``revision`` to a commit hash."""


def list_pretrained() -> list[str]:
    """Names of the trained models bundled with specvit, for :func:`load` and ``model=``.

    :func:`specvit.list_models` lists architecture presets (untrained); these are trained
    model folders shipped inside the package (the default model among them), loaded offline.

    Returns
    -------
    list of str
        Sorted names, e.g. ``["specvit-tiny-pfs"]``.
    """
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file())


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
        A local folder, the name of a bundled model (:func:`list_pretrained`; a local folder
        of the same name wins), or a Hub repo id ``"owner/name"``.
    revision : str, optional
        Hub revision: pin it to a 40-character commit hash for reproducible and safe
        downloads (a branch or tag also works, with an :class:`UnpinnedRevisionWarning`).
        Ignored for local folders.
    device : str or torch.device
        Where to put the weights: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"``.
    cache_dir : str or pathlib.Path, optional
        Hugging Face cache folder (default: the ``HF_HUB_CACHE`` / ``HF_HOME`` setting).
    token : str or bool, optional
        Hub token for private repos.

    Returns
    -------
    SpecViT
        The model in eval mode; its :attr:`~specvit.SpecViT.origin` holds the name and, for
        the Hub, the commit the weights came from.

    Raises
    ------
    ValueError
        For an empty name, a device this torch cannot use, or a config and weights that do
        not match (:class:`~specvit.WeightsMismatchError`).
    FileNotFoundError
        For a path that is not a model folder.

    Notes
    -----
    With ``HF_HUB_OFFLINE=1`` in the environment nothing is downloaded: the model must already
    be in the cache at that revision. ``HF_ENDPOINT`` selects another Hub server.
    """
    from specvit.inference.predictor import resolve_device

    if not str(name_or_path).strip():
        raise ValueError(
            "empty model name: give a model folder, a bundled model "
            f"({', '.join(list_pretrained())}) or a Hub repo id 'owner/name'"
        )
    device = resolve_device(device)
    path = Path(name_or_path).expanduser()
    if not path.is_dir() and str(name_or_path) in list_pretrained():
        path = PRETRAINED_DIR / str(name_or_path)
    if path.is_dir():
        _check_config(path / "config.json")
        model = SpecViT.from_pretrained(path)
        bundled = path.resolve().parent == PRETRAINED_DIR
        origin = {"name": path.name if bundled else str(name_or_path), "revision": ""}
    else:
        name = str(name_or_path)
        if path.exists():
            raise FileNotFoundError(f"{name!r} is a file, not a model folder")
        if _looks_local(name):
            raise FileNotFoundError(
                f"no such folder {name!r} (a model folder holds config.json and "
                "model.safetensors; a Hub repo id has the form 'owner/name')"
            )
        if revision is None or not _COMMIT.match(revision):
            warnings.warn(
                f"loading {name!r} at revision {revision or 'main'!r}, which can change under "
                "you; pin revision= to a commit hash for reproducible, safe downloads",
                UnpinnedRevisionWarning,
                stacklevel=2,
            )
        from huggingface_hub import hf_hub_download

        config = hf_hub_download(
            name, "config.json", revision=revision, cache_dir=cache_dir, token=token
        )
        _check_config(Path(config), f"config.json of {name!r}")
        model = SpecViT.from_pretrained(name, revision=revision, cache_dir=cache_dir, token=token)
        commit = Path(config).parent.name  # the cache's snapshots/<commit>/config.json
        origin = {"name": name, "revision": commit if _COMMIT.match(commit) else revision or ""}
    model.origin = origin
    return model.to(device).eval()


def _looks_local(name: str) -> bool:
    """A name that means a folder, not a Hub id: a path prefix, backslashes, more than one
    ``/``, a trailing ``/``, or an owner part that is an existing local folder."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.endswith("/"):
        return True
    return name.count("/") != 1 or Path(name.split("/")[0]).is_dir()


def _check_config(path: Path, what: str | None = None) -> None:
    """Raise ``ValueError`` naming the file unless ``path`` holds a JSON object."""
    what = what or str(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {path.parent}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{what} holds a JSON {type(data).__name__}, not an object of settings")
