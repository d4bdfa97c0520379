"""The grid teacher: near the exact posterior mean for faint stars, the label for bright ones."""

from __future__ import annotations

import json

import pytest
import torch

from specvit.bounds import LabelPrior, PosteriorMean, Uniform
from specvit.emulator import Emulator
from specvit.instrument import PFSNoiseModel
from specvit.labels import LABEL_NAMES
from training.engine.simulate import Prior, Simulator
from training.trainer.teacher import GridTeacher

LOG_G = LABEL_NAMES.index("log_g")


@pytest.fixture(scope="module")
def noise(etc_dir) -> PFSNoiseModel:
    return PFSNoiseModel.from_etc(etc_dir)


def test_faint_targets_are_the_posterior_mean_not_the_label(noise):
    sim = Simulator(noise=noise, prior=Prior(mag=(22.0, 22.5)))
    spectra = sim.sample(16, torch.Generator().manual_seed(8))
    teacher = GridTeacher(sim.emulator, sim.prior.label_prior, (16, 16, 12))
    target = teacher(spectra)
    assert target.shape == (16, 3) and target.dtype == torch.float32
    exact = PosteriorMean(sim.emulator, sim.prior.label_prior)(
        spectra["flux"], spectra["error"], torch.Generator().manual_seed(0)
    ).mean
    labels = spectra["labels"].double()
    to_exact = (target[:, LOG_G] - exact[:, LOG_G]).square().mean().sqrt()
    label_to_exact = (labels[:, LOG_G] - exact[:, LOG_G]).square().mean().sqrt()
    assert to_exact < 0.25 * label_to_exact, (to_exact, label_to_exact)


def test_bright_labels_the_grid_cannot_resolve_stay_true(noise):
    sim = Simulator(noise=noise, prior=Prior(mag=(17.0, 17.5)))
    spectra = sim.sample(16, torch.Generator().manual_seed(9))
    teacher = GridTeacher(sim.emulator, sim.prior.label_prior, (16, 16, 12))
    target = teacher(spectra)
    # At i = 17 (S/N ~ 100) every posterior is far narrower than a cell (0.25 dex of log g).
    assert torch.equal(target, spectra["labels"]), target - spectra["labels"]


def test_teacher_needs_the_label_prior():
    prior = LabelPrior({"a": Uniform(0, 1), "b": Uniform(0, 1), "c": Uniform(0, 1)})
    with pytest.raises(ValueError, match="prior must be over"):
        GridTeacher(Emulator.load(), prior, (4, 4, 4))


def _first_loss(tmp_path, etc_dir, *overrides: str) -> float:
    from training.cli.train import main

    args = [f"out_dir={tmp_path}", f"data.etc_dir={etc_dir}", "data.n_train=32", "data.n_val=16"]
    args += ["train.batch_size=16", "train.epochs=1", "train.log_every=1", "train.progress=false"]
    assert main(["--config", "tiny", *args, *overrides]) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return next(r["loss"] for r in records if r["kind"] == "train")


def test_trainer_regresses_the_means_on_the_teacher(tmp_path, etc_dir):
    true = _first_loss(tmp_path / "true", etc_dir)
    taught = _first_loss(tmp_path / "taught", etc_dir, "data.teacher_grid=[8, 8, 6]")
    # Same weights, same batch: the posterior means spread less than the labels they shrink.
    assert taught < 0.9 * true, (taught, true)
