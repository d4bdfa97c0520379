"""Hub-format weights: bit-exact round trip, strict loading, HF cache, real downloads.

Downloads go through the real huggingface_hub client against a loopback server
(``HF_ENDPOINT``), in a subprocess so that the environment variables huggingface_hub reads at
import (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``) apply as they do for users.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import torch

import specvit
from specvit import WeightsMismatchError

from .hub_server import HubRepoServer

REPO = "specvit-test/tiny"
COMMIT = hashlib.sha1(b"specvit test commit").hexdigest()


def _fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode() + value.cpu().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture
def saved(tmp_path):
    model = specvit.create_model("specvit_tiny", head="gaussian", pos_embed="wavelength")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    return model.eval(), folder


def _load_in_subprocess(env_extra: dict, revision: str | None) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import hashlib, specvit
        model = specvit.load({REPO!r}, revision={revision!r})
        digest = hashlib.sha256()
        for key, value in sorted(model.state_dict().items()):
            digest.update(key.encode() + value.cpu().numpy().tobytes())
        print(model.origin["revision"], digest.hexdigest())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HUB_DISABLE_TELEMETRY": "1", **env_extra})
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_round_trip_is_bit_exact(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    loaded = specvit.load(folder)
    assert _fingerprint(loaded) == _fingerprint(model)
    assert loaded.config == model.config
    x = torch.randn(4, 4096)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_missing_key_fails_clearly(saved):
    _, folder = saved
    state = safetensors.torch.load_file(folder / "model.safetensors")
    del state["head.fc.bias"]
    safetensors.torch.save_file(state, folder / "model.safetensors")
    with pytest.raises(WeightsMismatchError, match=r"missing keys \['head.fc.bias'\]"):
        specvit.load(folder)


def test_unexpected_key_fails_clearly(saved):
    _, folder = saved
    state = safetensors.torch.load_file(folder / "model.safetensors")
    state["blocks.9.attn.qkv.weight"] = torch.zeros(3)
    safetensors.torch.save_file(state, folder / "model.safetensors")
    with pytest.raises(
        WeightsMismatchError, match=r"unexpected keys \['blocks.9.attn.qkv.weight'\]"
    ):
        specvit.load(folder)


def test_wrong_shape_fails_clearly(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["embed_dim"] = 32  # the weights on disk are 64 wide
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsMismatchError, match=r"shape mismatches .*patch_embed.proj.weight"):
        specvit.load(folder)


def test_unknown_config_key_fails_clearly(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["num_layers"] = 6
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"unknown SpecViTConfig key\(s\) \['num_layers'\]"):
        specvit.load(folder)


def test_no_pickle_fallback(saved):
    _, folder = saved
    (folder / "model.safetensors").unlink()
    torch.save({}, folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors"):
        specvit.load(folder)


def test_not_a_model_or_repo(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        specvit.load(tmp_path / "missing")


def test_download_pinned_revision_then_offline_cache(saved, tmp_path):
    model, folder = saved
    cache = tmp_path / "hf-cache"
    with HubRepoServer(REPO, folder, COMMIT) as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(cache)}
        done = _load_in_subprocess(env, revision=COMMIT)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[-1] == _fingerprint(model)
        assert done.stdout.split()[-2] == COMMIT  # the commit the weights came from
        assert any(f"/resolve/{COMMIT}/model.safetensors" in r for r in hub.requests)
        wrong = _load_in_subprocess(env, revision="0" * 40)
        assert wrong.returncode != 0 and "RevisionNotFound" in wrong.stderr + wrong.stdout
    snapshot = cache / "models--specvit-test--tiny" / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").is_file()
    # The server is gone: HF_HUB_OFFLINE=1 loads from the cache the download filled.
    offline = {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    again = _load_in_subprocess(offline, revision=COMMIT)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-1] == _fingerprint(model)


def test_offline_prefilled_cache_layout(saved, tmp_path):
    """A cache laid out by hand (as an HPC site would pre-stage it) loads with HF_HUB_OFFLINE=1."""
    model, folder = saved
    repo = tmp_path / "cache" / "models--specvit-test--tiny"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    done = _load_in_subprocess(env, revision=COMMIT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == _fingerprint(model)
    missing = _load_in_subprocess(env, revision="1" * 40)
    assert missing.returncode != 0


def test_unpinned_revision_warns(saved, tmp_path):
    _, folder = saved
    repo = tmp_path / "cache" / "models--specvit-test--tiny"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    done = _load_in_subprocess(env, revision=None)
    assert done.returncode == 0, done.stderr
    assert "UnpinnedRevisionWarning" in done.stderr and "pin revision=" in done.stderr
    assert done.stdout.split()[-2] == COMMIT  # "main", resolved to the commit it pointed to


def test_folder_without_config(saved):
    _, folder = saved
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        specvit.load(folder)


# ---------------------------------------------------------------------------- issue 26
@pytest.mark.parametrize("dtype", [torch.int8, torch.int64, torch.bool, torch.float16])
def test_weights_of_another_dtype_fail_clearly(saved, dtype):
    """Right names and shapes, wrong dtype: refused at load, never label_shift for every star."""
    _, folder = saved
    state = safetensors.torch.load_file(folder / "model.safetensors")
    state = {k: v.to(dtype) for k, v in state.items()}
    safetensors.torch.save_file(state, folder / "model.safetensors")
    name = {torch.int8: "I8", torch.int64: "I64", torch.bool: "BOOL", torch.float16: "F16"}[dtype]
    with pytest.raises(WeightsMismatchError, match=rf"dtype mismatches .*file {name} vs model F32"):
        specvit.load(folder)


def _refuse_to_build(monkeypatch, max_blocks: int = 8, max_tokens: int = 10**6) -> None:
    """Fail the test if a model with more than ``max_blocks`` blocks or a learned positional
    embedding of more than ``max_tokens`` tokens is built with real memory."""
    from specvit.models import specvit as home

    blocks, pos = home.EncoderBlock, home.LearnedPosEmbed

    def block(*args, **kwargs):
        block.count += 1
        assert block.count <= max_blocks, "a hostile depth was built before the weights' check"
        return blocks(*args, **kwargs)

    def learned(num_tokens, embed_dim):
        real = torch.get_default_device().type != "meta"
        assert not (real and num_tokens > max_tokens), "a hostile input_length was allocated"
        return pos(num_tokens, embed_dim)

    block.count = 0
    monkeypatch.setattr(home, "EncoderBlock", block)
    monkeypatch.setattr(home, "LearnedPosEmbed", learned)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("depth", 100_000, "depth 100000 .* 2 encoder blocks"),
        ("input_length", 10**9, r"shape mismatches .*pos_embed.weight"),
    ],
)
def test_a_hostile_config_is_checked_against_the_weights_before_building(
    saved, monkeypatch, field, value, match
):
    _, folder = saved
    tiny = specvit.create_model("specvit_tiny")  # learned positions: input_length in the weights
    tiny.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    _refuse_to_build(monkeypatch)
    with pytest.raises(WeightsMismatchError, match=match):
        specvit.load(folder)


def test_a_config_whose_fixed_buffers_would_not_fit_is_refused(saved, monkeypatch):
    """A sinusoidal code has no weights to compare: its size is bounded instead."""
    _, folder = saved  # pos_embed="wavelength": no weight depends on input_length
    config = json.loads((folder / "config.json").read_text())
    config["input_length"] = 10**9
    (folder / "config.json").write_text(json.dumps(config))
    from specvit.layers import pos_embed

    real_code = pos_embed.sinusoidal_code

    def code(positions, dim, max_period):
        assert positions.device.type == "meta" or positions.numel() < 10**6, "allocated"
        return real_code(positions, dim, max_period)

    monkeypatch.setattr(pos_embed, "sinusoidal_code", code)
    with pytest.raises(WeightsMismatchError, match="GiB"):
        specvit.load(folder)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only machine's error")
@pytest.mark.parametrize("device", ["cuda", "meta", "xla"])
def test_load_refuses_a_device_it_cannot_use(saved, device):
    _, folder = saved
    with pytest.raises(ValueError, match=f"device '{device}'"):
        specvit.load(folder, device=device)


@pytest.mark.parametrize("name", ["", " "])
def test_an_empty_model_name_is_refused_not_the_current_folder(tmp_path, monkeypatch, name):
    specvit.create_model("specvit_tiny").save_pretrained(tmp_path)  # a model in the cwd
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="empty model name"):
        specvit.load(name)
    with pytest.raises(ValueError, match="empty model name"):
        specvit.Predictor(name, device="cpu")


def test_list_pretrained_names_the_bundled_model_and_load_takes_the_name():
    from specvit.inference import DEFAULT_MODEL

    assert specvit.list_pretrained() == ["specvit-tiny-pfs", DEFAULT_MODEL.name]
    assert not set(specvit.list_pretrained()) & set(specvit.list_models())
    model = specvit.load(DEFAULT_MODEL.name)
    assert _fingerprint(model) == _fingerprint(specvit.load(DEFAULT_MODEL))
    assert model.origin == {"name": DEFAULT_MODEL.name, "revision": ""}
