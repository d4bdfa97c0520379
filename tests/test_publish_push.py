"""``python -m training publish --repo-id``: push to the loopback Hub, then download the push.

Everything goes through the real huggingface_hub client (create_repo, preupload, Git LFS batch,
upload, verify, commit; then hf_hub_download), in subprocesses so that ``HF_ENDPOINT`` applies
as it does for users. The Xet protocol is not served (``HF_HUB_DISABLE_XET=1``).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import specvit
from training.trainer.checkpoint import save_checkpoint
from training.trainer.config import load_config

from .hub_server import HubRepoServer

ROOT = Path(__file__).resolve().parents[1]
REPO = "specvit-test/pushed"


def _checkpoint(folder: Path) -> Path:
    model = specvit.create_model("specvit_tiny")
    state = {
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "ema": None,
        "step": 7,
        "val_metrics": {},
        "run_config": load_config("tiny", []).to_dict(),
    }
    return save_checkpoint(state, folder, step=7)


def _env(hub: HubRepoServer, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_CACHE=str(cache),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        HF_TOKEN="hf_loopback_test_token",
        PYTHONPATH=str(ROOT),
    )
    return env


def test_push_then_download_the_returned_revision(tmp_path):
    ckpt = _checkpoint(tmp_path / "ckpt")
    out = tmp_path / "model"
    with HubRepoServer(REPO) as hub:
        env = _env(hub, tmp_path / "cache")
        cmd = [sys.executable, "-m", "training", "publish", str(ckpt), str(out)]
        done = subprocess.run(
            [*cmd, "--repo-id", REPO], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        revision = re.search(r"at revision ([0-9a-f]{40})", done.stdout).group(1)
        assert revision == hub.main
        assert any("/info/lfs/objects/batch" in r for r in hub.requests)  # weights went by LFS
        assert any(r.startswith("PUT /lfs-upload/") for r in hub.requests)
        names = sorted(p.name for p in out.iterdir())
        assert names == ["README.md", "config.json", "model.safetensors", "training_args.json"]
        code = textwrap.dedent(
            f"""
            import hashlib, specvit
            from huggingface_hub import hf_hub_download
            for name in {names!r}:
                path = hf_hub_download({REPO!r}, name, revision={revision!r})
                print(name, hashlib.sha256(open(path, "rb").read()).hexdigest())
            specvit.load({REPO!r}, revision={revision!r})
            """
        )
        got = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert got.returncode == 0, got.stderr
    expected = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in names}
    downloaded = dict(line.split() for line in got.stdout.splitlines())
    assert downloaded == expected
