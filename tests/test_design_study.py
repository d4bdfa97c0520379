"""training/design_study.py: every candidate is a valid recipe, distinct from the others."""

import pytest

from training.config import ConfigError, load_config
from training.design_study import load_candidates


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
    import json

    import yaml

    from training.design_study import _finished

    run = load_config("default", ["train.epochs=2", "data.n_train=512"]).to_dict()  # 4 steps
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(run))
    log = tmp_path / "metrics.jsonl"
    assert not _finished(tmp_path, 6.0)  # no log yet
    log.write_text(json.dumps({"kind": "val", "step": 2, "cpu_seconds": 100.0}) + "\n")
    assert not _finished(tmp_path, 6.0)
    assert _finished(tmp_path, 1.0)  # 100 s ≥ 1 CPU-minute
    log.write_text(json.dumps({"kind": "val", "step": 4, "cpu_seconds": 100.0}) + "\n")
    assert _finished(tmp_path, 6.0)  # the cosine ended before the budget
