"""Trainer parts: losses, schedule, checkpoints, EMA."""

from __future__ import annotations

import pytest
import torch

from training.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.trainer.ema import EMA
from training.trainer.losses import regression_loss
from training.trainer.optim import cosine_factor


def test_gaussian_nll_matches_torch():
    mean, log_sigma, target = torch.randn(5, 2), torch.randn(5, 2), torch.randn(5, 2)
    ours = regression_loss(torch.stack([mean, log_sigma], -1), target, "gaussian_nll")
    ref = torch.nn.GaussianNLLLoss(full=True)(mean, target, torch.exp(2 * log_sigma))
    assert ours == pytest.approx(float(ref), rel=1e-5)
    assert regression_loss(mean[..., None], target, "l1") == pytest.approx(
        float((mean - target).abs().mean())
    )
    with pytest.raises(ValueError, match="does not fit"):
        regression_loss(mean[..., None], target, "gaussian_nll")


def test_cosine_schedule_endpoints_and_warmup():
    assert cosine_factor(0, 100, 0, 0.1) == 1.0
    assert cosine_factor(99, 100, 0, 0.1) == pytest.approx(0.1)
    assert cosine_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert cosine_factor(9, 100, 10, 0.1) == 1.0
    assert cosine_factor(10, 100, 10, 0.1) == 1.0


def test_checkpoints_atomic_newest_kept(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint({"step": step, "w": torch.full((2,), float(step))}, tmp_path, step)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002.pt", "step_00000003.pt"]
    assert latest_checkpoint(tmp_path).name == "step_00000003.pt"
    assert load_checkpoint(tmp_path)["step"] == 3
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing")


def test_ema_moves_towards_the_weights():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.state_dict()["weight"], start + 0.5)


def test_decoupled_nll_gives_the_mean_the_mse_gradient_and_sigma_the_residual():
    target = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    mean = torch.zeros(64, 3, requires_grad=True)
    log_sigma = torch.zeros(64, 3, requires_grad=True)
    regression_loss(torch.stack([mean, log_sigma], -1), target, "decoupled_nll").backward()
    mse_mean = torch.zeros(64, 3, requires_grad=True)
    regression_loss(mse_mean[..., None], target, "mse").backward()
    torch.testing.assert_close(mean.grad, mse_mean.grad)  # σ does not scale the mean's step
    # d/d(log σ) of log σ + r²/(2σ²) at σ = 1 is 1 − r²: zero only where σ equals |r|
    torch.testing.assert_close(log_sigma.grad, (1 - target**2) / target.numel())
    with pytest.raises(ValueError, match="does not fit"):
        regression_loss(mean[..., None], target, "decoupled_nll")


def test_mean_target_trains_the_mean_and_leaves_sigma_on_the_true_labels():
    gen = torch.Generator().manual_seed(2)
    target, teacher = torch.randn(64, 3, generator=gen), torch.randn(64, 3, generator=gen)
    mean = torch.zeros(64, 3, requires_grad=True)
    log_sigma = torch.zeros(64, 3, requires_grad=True)
    out = torch.stack([mean, log_sigma], -1)
    regression_loss(out, target, "decoupled_nll", mean_target=teacher).backward()
    torch.testing.assert_close(mean.grad, -2 * teacher / teacher.numel())
    torch.testing.assert_close(log_sigma.grad, (1 - target**2) / target.numel())
    point = torch.zeros(64, 3, 1)
    assert regression_loss(point, target, "mse", mean_target=teacher) == pytest.approx(
        float(teacher.square().mean())
    )
    for kind, output in (("l1", point), ("gaussian_nll", out)):
        with pytest.raises(ValueError, match="needs a loss in"):
            regression_loss(output, target, kind, mean_target=teacher)
    with pytest.raises(ValueError, match="the target's shape"):
        regression_loss(point, target, "mse", mean_target=teacher[:, :2])


def test_constant_schedule_holds_after_warmup():
    assert cosine_factor(0, 100, 10, 0.1, constant=True) == pytest.approx(0.1)
    assert cosine_factor(50, 100, 10, 0.1, constant=True) == 1.0
    assert cosine_factor(99, 100, 10, 0.1, constant=True) == 1.0
