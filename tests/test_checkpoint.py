"""Method checkpoints: learnable tensors only, exact round trip, new class sets, clear refusals."""
import pytest
import torch
from safetensors.torch import load_file

from bmip.backbone import load_backbone
from bmip.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from bmip.methods import build_model
from tests.shared import CLASSNAMES


def _trained(backbone, name):
    torch.manual_seed(0)
    model = build_model(backbone, name, CLASSNAMES)
    with torch.no_grad():
        for p in model.learnable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("name", ["bmip", "cocoop", "bmip+promptsrc", "coop", "bmip+coprompt"])
def test_save_load_reproduces_logits_exactly(tiny_backbone, tmp_path, name):
    model = _trained(tiny_backbone, name)
    path = tmp_path / "prompts.safetensors"
    save_checkpoint(path, model, {"epoch": 3})
    images = torch.randn(4, 3, 32, 32)
    torch.manual_seed(123)  # loading must not depend on the RNG state
    loaded = load_model(path, tiny_backbone)
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))
    tensors = load_file(str(path))
    assert set(tensors) == {k for k, _ in model.named_learnable_parameters()}
    assert not any(k.startswith("clip") for k in tensors)
    _, meta = read_checkpoint(path)
    assert meta["method"] == name and meta["classnames"] == CLASSNAMES and meta["epoch"] == 3


def test_load_for_a_new_class_set(tiny_backbone, tmp_path):
    model = _trained(tiny_backbone, "bmip")
    path = tmp_path / "prompts.safetensors"
    save_checkpoint(path, model)
    novel = ["lighthouse", "snow leopard", "tram"]
    loaded = load_model(path, tiny_backbone, classnames=novel)
    model.set_classnames(novel)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = loaded(images)
        assert out.shape == (2, 3)
        assert torch.equal(out, model(images))


def test_refuses_other_method_backbone_and_garbage(tiny_backbone, tmp_path):
    path = tmp_path / "prompts.safetensors"
    save_checkpoint(path, _trained(tiny_backbone, "maple"))
    with pytest.raises(CheckpointError, match="holds method 'maple', not 'bmip'"):
        load_model(path, tiny_backbone, expect_method="bmip")
    torch.manual_seed(0)
    other = load_backbone("test-vit-tiny", "none")
    other.pretrained = "some-other-weights"
    with pytest.raises(CheckpointError, match="trained on backbone"):
        load_model(path, other)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable bmip checkpoint"):
        read_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.safetensors")
