"""Turn a training checkpoint into a Hub-ready model folder, and push it when asked.

Usage::

    python training/publish.py runs/paper/checkpoints OUT_DIR [--repo-id owner/name] [--private]

The folder holds ``model.safetensors`` and ``config.json`` (as written by
:meth:`specvit.SpecViT.save_pretrained`, so :func:`specvit.load` reads it: only what prediction
needs), ``training_args.json`` (the run's record: its config, the step and the validation
metrics, strict JSON with ``null`` for undefined metrics) and a model card ``README.md``
describing the training data and recipe with the validation metrics overall and per S/N bin.
With ``--repo-id`` the folder is uploaded as one commit to that Hub repo (``HF_TOKEN`` or
``--token`` authenticates; ``HF_ENDPOINT`` selects another Hub server).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository root importable
    sys.path.insert(0, str(ROOT))

from huggingface_hub import HfApi, ModelCard  # noqa: E402

from specvit.config import SpecViTConfig  # noqa: E402
from specvit.labels import LABEL_UNITS  # noqa: E402
from specvit.models.specvit import SpecViT  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.scoring import strict_json  # noqa: E402

__all__ = [
    "TRAINING_ARGS_NAME",
    "model_card",
    "publish",
    "push",
    "training_record",
    "write_model_folder",
]

#: File name of the training run's record in a published model folder.
TRAINING_ARGS_NAME = "training_args.json"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _metrics_tables(metrics: dict[str, Any], labels: tuple[str, ...]) -> str:
    if not metrics:
        return "No validation metrics were recorded in this checkpoint.\n"
    if "overall" not in metrics:
        return "The validation metrics of this checkpoint are in an older format.\n"
    lines = [
        "| S/N bin | N | " + " | ".join(f"R² {n} | MAE {n} | RMSE {n}" for n in labels) + " |",
        "|---|---|" + "---|---|---|" * len(labels),
    ]
    for name, group in [("all", metrics["overall"]), *((g["bin"], g) for g in metrics["snr"])]:
        cells = " | ".join(
            " | ".join(_fmt(group["metrics"][n][k]) for k in ("r2", "mae", "rmse")) for n in labels
        )
        lines.append(f"| {name} | {group['n']} | {cells} |")
    units = ", ".join(f"{n} in {LABEL_UNITS[n]}" for n in labels)
    return "\n".join(lines) + f"\n\nMAE and RMSE: {units}.\n"


def _data_description(run: dict[str, Any]) -> str:
    data, train = run["data"], run["train"]
    if data["source"] == "engine":
        prior = data["prior"] or "the engine's default prior"
        text = (
            "Simulated Subaru PFS medium-resolution spectra (4096 pixels, 7100–8850 Å) from "
            "specvit's data engine (`training/simulate.py`): a polynomial spectral emulator, "
            "the MR line-spread function and the PFS exposure-time-calculator noise model. "
            f"Labels drawn from {prior}. Every training step drew fresh spectra and fresh noise; "
            f"an epoch was {data['n_train']} spectra."
        )
    else:
        text = (
            f"HDF5 shards `{data['train_path']}` (validation `{data['val_path']}`), with fresh "
            "noise x + noise_level·ε⊙σ drawn every step."
        )
    return (
        f"{text} Noise level {data['noise_level']}; validation on {data['n_val']} spectra with one "
        f"fixed noise draw. {train['epochs']} epochs, batch {train['batch_size']}."
    )


def training_record(state: dict[str, Any]) -> dict[str, Any]:
    """The run's record in a checkpoint: ``run_config``, ``step`` and ``validation`` metrics."""
    return {
        "run_config": state["run_config"],
        "step": int(state["step"]),
        "validation": state.get("val_metrics") or {},
    }


def model_card(model: SpecViT, record: dict[str, Any]) -> ModelCard:
    """The model card: the model's own card plus the training data, recipe and metrics."""
    config = model.config
    run, step = record["run_config"], record["step"]
    optim, train = run["optim"], run["train"]
    labels = config.label_names
    norm = ", ".join(
        f"{n}: shift {s:.6g}, scale {c:.6g}"
        for n, s, c in zip(labels, config.label_shift, config.label_scale, strict=True)
    )
    training = f"""
Input normalisation `{config.input_norm}`; label normalisation `physical = shift + scale · output`
({norm}).

## Training data

{_data_description(run)}

## Training recipe

Step {step} of the run; loss `{train["loss"]}` on {run["label_norm"]}-normalised labels,
AdamW (lr {optim["lr"]}, weight decay {optim["weight_decay"]}, betas {optim["betas"]}), cosine to
{optim["eta_min"]} with {optim["warmup_steps"]} warm-up steps, gradient clip
{optim["clip_grad_norm"]}, precision {train["precision"]}, seed {run["seed"]}, EMA decay
{train["ema_decay"]}.

## Validation metrics

{_metrics_tables(record["validation"].get("metrics", {}), labels)}
S/N is the median over pixels of flux/σ; bins `[low, high)` with the edges 2, 3, 4, 5, 7, 10,
15, ∞ (`training/scoring.py`).

## Limitations

Trained on simulated spectra only; the emulator, its label ranges and the noise model bound what
the model has seen. Check it on real spectra before trusting it there.
"""
    heading = f"SpecViT ({run['model']['preset']}): {', '.join(labels)} from PFS MR spectra"
    return model.generate_model_card(heading=heading, training=training)


def write_model_folder(model: SpecViT, record: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``model`` with its training ``record`` as a Hub-ready folder (see the module doc).

    Parameters
    ----------
    model : SpecViT
        The weights and config to publish.
    record : dict
        :func:`training_record` of the run.
    out_dir : str or pathlib.Path
        Destination folder (created; files of the same names are replaced).

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_card(model, record).save(out / "README.md")
    model.save_pretrained(out)
    text = json.dumps(strict_json(record), indent=2, sort_keys=True, allow_nan=False)
    (out / TRAINING_ARGS_NAME).write_text(text + "\n", encoding="utf-8")
    return out


def publish(
    checkpoint: str | Path,
    out_dir: str | Path,
    repo_id: str | None = None,
    *,
    token: str | None = None,
    private: bool = False,
) -> Path:
    """Write a Hub-ready folder from a checkpoint and optionally push it.

    Parameters
    ----------
    checkpoint : str or pathlib.Path
        A checkpoint file, or a folder of checkpoints (the newest is used).
    out_dir : str or pathlib.Path
        Destination folder (created).
    repo_id : str, optional
        Hub repo ``owner/name`` to upload the folder to (created if missing).
    token : str, optional
        Hub token (default: the ``HF_TOKEN`` environment / stored login).
    private : bool
        Create the repo as private.

    Returns
    -------
    pathlib.Path
        The folder written. The EMA weights are published when the run kept them.
    """
    state = load_checkpoint(checkpoint)
    model = SpecViT(SpecViTConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    out = write_model_folder(model, training_record(state), out_dir)
    if repo_id is not None:
        push(out, repo_id, token=token, private=private, message=f"specvit step {state['step']}")
    return out


def push(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    message: str = "specvit model",
) -> str:
    """Upload a model folder to a Hub repo (created if missing) as one commit.

    Parameters
    ----------
    folder : str or pathlib.Path
        The folder written by :func:`publish`.
    repo_id : str
        Hub repo ``owner/name``.
    token : str, optional
        Hub token (default: the ``HF_TOKEN`` environment / stored login).
    private : bool
        Create the repo as private.
    message : str
        The commit message.

    Returns
    -------
    str
        The commit hash: pin ``specvit.load(repo_id, revision=...)`` to it.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message)
    print(f"pushed {folder} to {repo_id} at revision {info.oid}")
    return info.oid


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint file or folder of checkpoints")
    parser.add_argument("out_dir", help="folder to write")
    parser.add_argument("--repo-id", help="also push to this Hub repo (owner/name)")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN / stored login)")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    args = parser.parse_args(argv)
    out = publish(
        args.checkpoint, args.out_dir, args.repo_id, token=args.token, private=args.private
    )
    print(f"wrote {out}" + (f" and pushed to {args.repo_id}" if args.repo_id else ""))


if __name__ == "__main__":
    main()
