"""The example model in examples/models loads strictly and predicts engine spectra; every model
config in the repository is strict JSON holding only what prediction needs; older configs load."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import specvit
from specvit.inference import PredictFlag
from specvit.instrument import PFSNoiseModel
from specvit.labels import LABEL_NAMES as LABELS
from training.engine.simulate import Simulator
from training.evaluation.scoring import score

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "models" / "specvit-tiny-engine"
#: A copy of the example's config.json as specvit 0.1.0.dev0 wrote it: the training run in
#: ``extra`` (with paths) and bare NaN tokens.
LEGACY_CONFIG = ROOT / "tests" / "data" / "legacy_config_0.1.0.dev0.json"


def _strict(text: str):
    def reject(token: str):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=reject)


def _model_configs() -> list[Path]:
    skip = {".git", ".venv", "site", "build", "dist", "data", "runs"}  # runs/: untracked output
    return sorted(p for p in ROOT.rglob("config.json") if not skip & set(p.relative_to(ROOT).parts))


def test_every_model_config_is_strict_and_holds_only_what_predict_needs():
    configs = _model_configs()
    assert FOLDER / "config.json" in configs
    fields = {f.name for f in dataclasses.fields(specvit.SpecViTConfig)}
    for path in configs:
        data = _strict(path.read_text(encoding="utf-8"))
        assert set(data) == fields, path  # the model's description, nothing else
        strings = [v for v in data.values() if isinstance(v, str)]
        strings += [v for v in data["label_names"]]
        assert not any("/" in v or "\\" in v for v in strings), path  # names no path
        specvit.SpecViTConfig.from_dict(data)
    record = _strict((FOLDER / "training_args.json").read_text(encoding="utf-8"))
    assert set(record) == {"run_config", "step", "validation"} and record["step"] == 4608


def test_older_config_with_the_training_record_in_extra_still_loads(tmp_path, etc_dir):
    text = LEGACY_CONFIG.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="NaN"):
        _strict(text)  # the fixture is the old, non-strict file
    assert "extra" in json.loads(text)
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(LEGACY_CONFIG, old / "config.json")
    shutil.copy(FOLDER / "model.safetensors", old)
    legacy, current = specvit.load(old), specvit.load(FOLDER)
    assert legacy.config.domain is None  # the old file did not record one
    assert legacy.config.replace(domain=current.config.domain) == current.config
    test = Simulator(noise=PFSNoiseModel.from_etc(etc_dir)).sample(
        64, torch.Generator().manual_seed(3)
    )
    a = specvit.predict(test["flux"].numpy(), test["error"].numpy(), model=legacy)
    b = specvit.predict(test["flux"].numpy(), test["error"].numpy(), model=current)
    for name in LABELS:
        assert np.array_equal(np.asarray(a[name]), np.asarray(b[name]))


def test_example_model_predicts_engine_spectra(etc_dir):
    model = specvit.load(FOLDER)
    assert model.config.label_names == LABELS
    sim = Simulator(noise=PFSNoiseModel.from_etc(etc_dir))
    test = sim.sample(512, torch.Generator().manual_seed(7))
    table = specvit.predict(test["flux"].numpy(), test["error"].numpy(), model=model)
    # labels everywhere; only the physical context's warnings (low SNR, a label just outside
    # the prior box) may be set, and OUT_OF_DOMAIN at its false-alarm rate (its χ² and
    # continuum-shape tests at p < 1e-3 each: one star of these 512)
    flags = np.asarray(table["flags"])
    warnings = PredictFlag.LOW_SNR | PredictFlag.OUTSIDE_PRIOR | PredictFlag.OUT_OF_DOMAIN
    assert len(table) == 512 and (flags & ~warnings == 0).all()
    assert ((flags & PredictFlag.OUT_OF_DOMAIN) != 0).mean() <= 0.01
    pred = np.stack([np.asarray(table[n], dtype=np.float64) for n in LABELS], 1)
    overall = score(test["labels"], pred, test["snr"], LABELS)["overall"]["metrics"]
    r2 = {k: v["r2"] for k, v in overall.items()}
    # docs/training.md: validation R² 0.969 / 0.562 / 0.862 on 1000 spectra
    assert r2["T_eff"] > 0.9 and r2["log_g"] > 0.4 and r2["M_H"] > 0.75, r2


def test_example_model_card_names_its_data():
    card = (FOLDER / "README.md").read_text()
    assert "## Training data" in card and "9 epochs, batch 256" in card
