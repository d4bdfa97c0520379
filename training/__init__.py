"""specvit's training side (not shipped in the wheel): data engine, trainer, publishing."""
