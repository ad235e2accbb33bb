from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from bmip.io import file_sha256
from bmip.miniworld.pretrain import (
    MODEL_NAME,
    CompactText,
    PretrainConfig,
    WordCachedTokenizer,
    load_pretrained,
    pretrain,
    read_sidecar,
    register_model_configs,
    sample_batch,
    STYLE_MIX,
)

TINY = dict(steps=2, batch_size=16, warmup_steps=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrain") / "mini-vit.pt"
    pretrain(out, PretrainConfig(seed=4, **TINY), threads=1)
    return out


def test_checkpoint_loads_through_open_clip(checkpoint: Path) -> None:
    register_model_configs()
    model = open_clip.create_model(MODEL_NAME, pretrained=str(checkpoint))
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    image_size = model.visual.image_size
    with torch.no_grad():
        image = model.encode_image(torch.zeros(2, 3, *image_size), normalize=True)
        text = model.encode_text(tokenizer(["a photo of a red striped circle."]), normalize=True)
    assert image.shape == (2, 64) and text.shape == (1, 64)
    fresh = open_clip.create_model(MODEL_NAME)
    trained = torch.load(checkpoint, weights_only=True)
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in trained.items())


def test_sidecar_records_the_run(checkpoint: Path) -> None:
    record = read_sidecar(checkpoint)
    assert record["sha256"] == file_sha256(checkpoint)
    assert record["config"]["seed"] == 4 and record["config"]["steps"] == 2
    assert np.isfinite(record["final_loss"])
    for key in ("wall_seconds", "torch_version", "open_clip_version", "generator_version", "threads"):
        assert key in record


def test_same_seed_gives_identical_weights(checkpoint: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pt"
    pretrain(again, PretrainConfig(seed=4, **TINY), threads=1)
    assert file_sha256(again) == file_sha256(checkpoint)
    other = tmp_path / "other.pt"
    pretrain(other, PretrainConfig(seed=5, **TINY), threads=1)
    assert file_sha256(other) != file_sha256(checkpoint)


def test_load_pretrained_is_in_eval_mode(checkpoint: Path) -> None:
    model, tokenizer = load_pretrained(checkpoint)
    assert not model.training
    assert tokenizer(["a photo of a blue plain star."]).shape == (1, 77)


def test_pretraining_batches_are_a_function_of_seed_and_step() -> None:
    a_images, a_captions = sample_batch(0, 3, 24, STYLE_MIX)
    b_images, b_captions = sample_batch(0, 3, 24, STYLE_MIX)
    c_images, _ = sample_batch(0, 4, 24, STYLE_MIX)
    assert np.array_equal(a_images, b_images) and a_captions == b_captions
    assert not np.array_equal(a_images, c_images)


def test_fast_text_path_matches_open_clip(checkpoint: Path) -> None:
    """Truncated sequences + compact embeddings must give open_clip's own text features."""
    model, tokenizer = load_pretrained(checkpoint)
    _, captions = sample_batch(1, 0, 32, STYLE_MIX)
    fast = WordCachedTokenizer(tokenizer)(captions)
    full = tokenizer(captions)
    assert torch.equal(fast, full[:, : fast.shape[1]]) and not full[:, fast.shape[1] :].any()
    with torch.no_grad():
        ours = CompactText(model, tokenizer)(fast)
        theirs = model.encode_text(full)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
