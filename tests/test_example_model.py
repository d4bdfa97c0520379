"""The example model in examples/models loads strictly and predicts engine spectra."""

from pathlib import Path

import numpy as np
import torch

import specvit
from specvit.inference import PredictFlag
from specvit.instrument import PFSNoiseModel
from training.scoring import score
from training.simulate import Simulator

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "models" / "specvit-tiny-engine"
LABELS = ("T_eff", "log_g", "M_H")


def test_example_model_predicts_engine_spectra(etc_dir):
    model = specvit.load(FOLDER)
    assert model.config.label_names == LABELS
    sim = Simulator(noise=PFSNoiseModel.from_etc(etc_dir))
    test = sim.sample(512, torch.Generator().manual_seed(7))
    table = specvit.predict(test["flux"].numpy(), test["error"].numpy(), model=model)
    # labels everywhere; only the physical context's warnings (low SNR, a label just outside
    # the prior box) may be set
    warnings = PredictFlag.LOW_SNR | PredictFlag.OUTSIDE_PRIOR
    assert len(table) == 512 and (table["flags"] & ~warnings == 0).all()
    pred = np.stack([np.asarray(table[n], dtype=np.float64) for n in LABELS], 1)
    overall = score(test["labels"], pred, test["snr"], LABELS)["overall"]["metrics"]
    r2 = {k: v["r2"] for k, v in overall.items()}
    # docs/training.md: validation R² 0.969 / 0.562 / 0.862 on 1000 spectra
    assert r2["T_eff"] > 0.9 and r2["log_g"] > 0.4 and r2["M_H"] > 0.75, r2


def test_example_model_card_names_its_data():
    card = (FOLDER / "README.md").read_text()
    assert "## Training data" in card and "9 epochs, batch 256" in card
