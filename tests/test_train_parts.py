"""Trainer parts: metrics and S/N bins, losses, schedule, checkpoints, EMA."""

from __future__ import annotations

import math

import pytest
import torch

from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.ema import EMA
from training.losses import regression_loss
from training.metrics import SNR_BIN_CENTRES, SNR_BIN_EDGES, regression_metrics, snr_binned_metrics
from training.optim import cosine_factor


def test_snr_bins_bracket_the_papers_centres():
    assert len(SNR_BIN_EDGES) == len(SNR_BIN_CENTRES) + 1
    for i, centre in enumerate(SNR_BIN_CENTRES):
        assert SNR_BIN_EDGES[i] < centre < SNR_BIN_EDGES[i + 1]
    assert SNR_BIN_EDGES[0] == pytest.approx(2.598, abs=1e-3)
    assert SNR_BIN_EDGES[-1] == pytest.approx(24.85, abs=1e-2)


def test_regression_metrics_match_definitions():
    true = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    pred = torch.tensor([[1.5], [2.0], [2.5], [4.0]])
    m = regression_metrics(pred, true, ["log_g"])["log_g"]
    assert m["r2"] == pytest.approx(1 - 0.5 / 5.0)
    assert m["mae"] == pytest.approx(0.25) and m["rmse"] == pytest.approx(math.sqrt(0.125))
    with pytest.raises(ValueError, match="must both be"):
        regression_metrics(pred, true[:3], ["log_g"])


def test_binned_metrics_split_by_snr():
    true = torch.arange(8.0)[:, None]
    snr = torch.tensor([3.0, 3.1, 10.0, 10.5, 11.0, 50.0, 1.0, 21.0])
    out = snr_binned_metrics(true, true, snr, ["log_g"])
    assert out["all"]["log_g"]["n"] == 8
    assert [out[f"snr_{c}"]["log_g"]["n"] for c in SNR_BIN_CENTRES] == [2, 0, 0, 0, 3, 0, 1]
    assert out["snr_3"]["log_g"]["r2"] == 1.0 and math.isnan(out["snr_4"]["log_g"]["r2"])


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


def test_constant_schedule_holds_after_warmup():
    assert cosine_factor(0, 100, 10, 0.1, constant=True) == pytest.approx(0.1)
    assert cosine_factor(50, 100, 10, 0.1, constant=True) == 1.0
    assert cosine_factor(99, 100, 10, 0.1, constant=True) == 1.0
