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
