"""bmip analyze's interventions on the prompt term, against independent computations."""
from __future__ import annotations

import json

import pytest
import torch

from bmip.engine.analyze import CAUSAL, CHECKS, Intervention, PromptTermMean, analyze
from bmip.methods import build_model
from tests.shared import CLASSNAMES

IMAGES = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _model(backbone, name: str = "ivlp"):
    torch.manual_seed(0)
    return build_model(backbone, name, CLASSNAMES).eval()


def _logits(model, probe) -> torch.Tensor:
    model.probe = probe
    try:
        with torch.no_grad():
            return model(IMAGES)
    finally:
        model.probe = None


def test_keeping_both_terms_reproduces_the_model(tiny_backbone):
    model = _model(tiny_backbone)
    assert (_logits(model, Intervention("identity")) - _logits(model, None)).abs().max() <= 1e-5


class MaskPromptKeys:
    """Runs every prompted block with the prompt keys masked out for the original tokens: the
    attention renormalised over the original tokens, computed by open_clip's own attention."""

    reference_towers = frozenset()

    def __call__(self, tower, k, block, x, slots, biases):
        if not slots.length:
            return None
        n = x.shape[1]
        mask = torch.zeros(n, n) if slots.attn_mask is None else slots.attn_mask[:n, :n].clone().float()
        prompts = slice(slots.start, slots.start + slots.length)
        original = torch.ones(n, dtype=torch.bool)
        original[prompts] = False
        mask[original.nonzero(), torch.arange(n)[prompts]] = float("-inf")
        return block(x, attn_mask=mask)


def test_removing_the_prompt_term_is_masking_the_prompt_keys(tiny_backbone):
    model = _model(tiny_backbone)
    removed = _logits(model, Intervention("no_prompt_term"))
    assert (removed - _logits(model, MaskPromptKeys())).abs().max() <= 1e-4
    assert (removed - _logits(model, None)).abs().max() > 1e-3  # the prompts did matter


def test_the_mean_of_one_input_is_that_input(tiny_backbone):
    model = _model(tiny_backbone, "vpt")  # vision prompts only: one image is the whole "dataset"
    one = IMAGES[:1]
    means = PromptTermMean()
    model.probe = means
    with torch.no_grad():
        model(one)
        model.probe = Intervention("mean_prompt_term", means.means())
        replaced = model(one)
        model.probe = None
        plain = model(one)
    assert (replaced - plain).abs().max() <= 1e-5


def test_zero_shot_reweighting_sees_the_unprompted_model(tiny_backbone):
    model = _model(tiny_backbone)
    probe = Intervention("zero_shot_reweighting")
    logits = _logits(model, probe)
    assert {("vision", 0), ("text", 0), ("vision", 11), ("text", 11)} <= set(probe.reference)
    assert probe.reference[("vision", 0)][0].shape[1] == 17  # CLS + 16 patches, no prompt tokens
    assert torch.isfinite(logits).all() and (logits - _logits(model, None)).abs().max() > 1e-4


def test_analyze_writes_every_check_in_both_label_spaces(toy_setup, tmp_path):
    from bmip.engine import paths
    from bmip.engine.evaluate import evaluate
    from bmip.engine.train import train

    config, _ = toy_setup
    trained = train(config, "base2novel", "coop", "toy", 1, tmp_path / "train")
    metrics = json.loads((evaluate(config, "base2novel", "coop", "toy", 1, trained / paths.PROMPTS,
                                   tmp_path / "eval") / paths.METRICS).read_text())
    out = analyze(config, "coop", "toy", 1, trained / paths.PROMPTS, tmp_path / "analysis")
    doc = json.loads((out / CAUSAL).read_text())
    assert list(doc["checks"]) == list(CHECKS)
    assert doc["checks"]["as_trained"]["base"] == pytest.approx(metrics["summary"]["base"])
    assert doc["checks"]["as_trained"]["novel"] == pytest.approx(metrics["summary"]["novel"])
    assert all(0 <= doc["checks"][c][p] <= 100 for c in CHECKS for p in ("base", "novel"))
    with pytest.raises(Exception, match="no prompt positions"):
        zs = train(config, "base2novel", "zsclip", "toy", 1, tmp_path / "train_zs")
        analyze(config, "zsclip", "toy", 1, zs / paths.PROMPTS, tmp_path / "analysis_zs")
