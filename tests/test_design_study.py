"""training/evaluation/design_study.py: every candidate is a valid recipe, distinct from the
others."""

import pytest

from training.evaluation.design_study import load_candidates
from training.trainer.config import ConfigError, load_config


def test_every_candidate_is_a_valid_recipe_distinct_from_the_base():
    base, common, candidates = load_candidates()
    assert candidates["default"] == []
    seen = {}
    for name, overrides in candidates.items():
        config = load_config(base, [*common, *overrides]).to_dict()
        schedule = "cosine" if name.startswith("cosine") else "constant"
        assert config["optim"]["schedule"] == schedule, name
        key = repr(config)
        assert key not in seen, f"{name} trains the same recipe as {seen.get(key)}"
        seen[key] = name


def test_a_typo_in_a_candidate_fails_before_any_training():
    base, common, _ = load_candidates()
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(base, [*common, "model.overides.head=point"])


def test_a_run_is_finished_at_its_budget_or_at_the_end_of_its_schedule(tmp_path):
    from training.evaluation.design_study import _finished
    from training.trainer.rundir import RunDir

    run = RunDir(tmp_path)
    run.write_config(load_config("default", ["train.epochs=2"]).to_dict())
    assert not _finished(run, 6.0)  # no log yet
    run.append({"kind": "val", "step": 2, "epoch": 1.0, "cpu_seconds": 100.0})
    assert not _finished(run, 6.0)
    assert _finished(run, 1.0)  # 100 s ≥ 1 CPU-minute
    run.append({"kind": "val", "step": 4, "epoch": 2.0, "cpu_seconds": 100.0})
    assert _finished(run, 6.0)  # the schedule (2 epochs of 2 steps) ended before the budget
