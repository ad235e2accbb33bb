"""Backbone loading: names, tags, local files (plain and TorchScript), and clear failures."""
import pytest
import torch
from torch import nn

from bmip import backbone as bb
from bmip.backbone import BackboneError, load_backbone, weights_sha256
from bmip.io import file_sha256


def test_random_init_is_frozen_and_has_no_weight_file(tiny_backbone):
    assert tiny_backbone.weights_path is None and weights_sha256(tiny_backbone) is None
    assert not any(p.requires_grad for p in tiny_backbone.clip.parameters())
    assert (tiny_backbone.text_width, tiny_backbone.vision_width, tiny_backbone.embed_dim) == (48, 64, 32)


def test_local_weight_file(tiny_backbone, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(tiny_backbone.clip.state_dict(), path)
    loaded = load_backbone("test-vit-tiny", str(path))
    assert loaded.weights_path == path and weights_sha256(loaded) == file_sha256(path)
    for key, value in tiny_backbone.clip.state_dict().items():
        assert torch.equal(value, loaded.clip.state_dict()[key])


def _as_torchscript(state, path):
    """A TorchScript archive holding `state` under the same names, like OpenAI's CLIP files."""
    root = nn.Module()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, nn.Module())
            module = getattr(module, name)
        module.register_buffer(leaf, value.clone())
    torch.jit.script(root).save(str(path))


def test_torchscript_weights_are_converted_to_safetensors(tiny_backbone, tmp_path):
    path = tmp_path / "ViT-tiny.pt"
    _as_torchscript(tiny_backbone.clip.state_dict(), path)
    assert bb.is_torchscript(path)
    loaded = load_backbone("test-vit-tiny", str(path))
    assert loaded.weights_path == tmp_path / "ViT-tiny.safetensors"
    for key, value in tiny_backbone.clip.state_dict().items():
        assert torch.equal(value, loaded.clip.state_dict()[key])


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(BackboneError, match="unknown model 'ViT-Nope'"):
        load_backbone("ViT-Nope", "none")
    with pytest.raises(BackboneError, match="unknown pretrained tag 'nonsense'.*openai"):
        load_backbone("ViT-B-16", "nonsense")
    with pytest.raises(BackboneError, match="weight file not found"):
        load_backbone("test-vit-tiny", str(tmp_path / "missing.pt"))

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(bb.open_clip.pretrained, "download_pretrained", offline)
    with pytest.raises(BackboneError) as info:
        load_backbone("ViT-B-16", "openai", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt" in message
    assert str(tmp_path / "ViT-B-16.pt") in message and "backbone.pretrained" in message
