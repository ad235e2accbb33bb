"""The mechanism hooks of the one prompted pass (bmip.prompting.attention_terms, the probe) against
the decomposition written out from a block's own weights, and against the block's real attention."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from bmip.engine import mechanism
from bmip.methods import build_model
from bmip.prompting import attention_terms, pooled_positions
from tests.shared import CLASSNAMES


class Capture:
    """A probe that keeps every block input it sees."""

    reference_towers = frozenset()

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], tuple] = {}

    def __call__(self, tower, k, block, x, slots, biases) -> None:
        self.seen[(tower, k)] = (block, x.detach().clone(), slots)


def _captured(backbone, name: str, images: torch.Tensor) -> tuple[Capture, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(backbone, name, CLASSNAMES).eval()
    capture = Capture()
    model.probe = capture
    with torch.no_grad():
        logits = model(images)
    return capture, logits


def _direct(block, x: torch.Tensor, slots, tower: str):
    """lambda, prompt term lambda.B and re-weighted term (1 - lambda).A per sequence and head, with
    loops, from the formula: s_j = q.k_j / sqrt(d_h), t_i = q.k^P_i / sqrt(d_h),
    lambda = sum exp t / (sum exp t + sum exp s), B = sum softmax(t) v^P, A = sum softmax(s) v."""
    attn = block.attn
    width, heads = x.shape[-1], attn.num_heads
    e = width // heads
    h = block.ln_1(x)
    q_all, k_all, v_all = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
    prompt_pos = set(range(slots.start, slots.start + slots.length))
    lam, prompt_term, rest_term = [], [], []
    for b in range(x.shape[0]):
        query = int(slots.eot[b]) if tower == "text" else 0
        visible = range(query + 1) if tower == "text" else range(x.shape[1])
        lam_b, p_b, r_b = [], [], []
        for hd in range(heads):
            cut = slice(hd * e, (hd + 1) * e)
            q = q_all[b, query, cut]
            originals = [j for j in visible if j not in prompt_pos]
            prompts = [i for i in visible if i in prompt_pos]
            s = torch.stack([q @ k_all[b, j, cut] for j in originals]) / e**0.5
            t = torch.stack([q @ k_all[b, i, cut] for i in prompts]) / e**0.5
            share = t.exp().sum() / (t.exp().sum() + s.exp().sum())
            a_orig = sum(w * v_all[b, j, cut] for w, j in zip(s.softmax(0), originals))
            b_prompt = sum(w * v_all[b, i, cut] for w, i in zip(t.softmax(0), prompts))
            lam_b.append(share)
            p_b.append(share * b_prompt)
            r_b.append((1 - share) * a_orig)
        lam.append(torch.stack(lam_b))
        prompt_term.append(torch.stack(p_b))
        rest_term.append(torch.stack(r_b))
    return torch.stack(lam), torch.stack(prompt_term), torch.stack(rest_term)


@pytest.mark.parametrize("tower,k", [("vision", 0), ("vision", 5), ("text", 0), ("text", 7)])
def test_terms_equal_the_formula_and_add_up_to_the_real_attention(tiny_backbone, tower, k):
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    capture, _ = _captured(tiny_backbone, "ivlp", images)
    block, x, slots = capture.seen[(tower, k)]
    with torch.no_grad():
        rows = pooled_positions(tower, x, slots)
        terms = attention_terms(block, x, slots, rows)
        lam, prompt, rest = _direct(block, x, slots, tower)
        # the formula, from the block's weights
        assert (terms.prompt_share[:, :, 0] - lam).abs().max() <= 1e-5
        assert (terms.prompt_term[:, :, 0] - prompt).abs().max() <= 1e-5
        assert (terms.reweighted[:, :, 0] - rest).abs().max() <= 1e-5
        ratio = terms.prompt_term[:, :, 0].norm(dim=-1) / terms.reweighted[:, :, 0].norm(dim=-1)
        assert (ratio - prompt.norm(dim=-1) / rest.norm(dim=-1)).abs().max() <= 1e-5
        # the two terms add up to the block's real attention output at the pooled token
        h = block.ln_1(x)
        mask = slots.attn_mask.to(x.dtype) if slots.attn_mask is not None else None
        real, weights = block.attn(h, h, h, attn_mask=mask, need_weights=True, average_attn_weights=False)
        index = rows.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        ours = terms.output_space(terms.prompt_term + terms.reweighted) + block.attn.out_proj.bias
        assert (ours - torch.gather(real, 1, index)).abs().max() <= 1e-5
        # lambda is the mass the pooled token puts on the prompt positions in the block's own weights
        pooled = torch.gather(weights, 2, rows.view(-1, 1, 1, 1).expand(-1, weights.shape[1], 1, weights.shape[-1]))
        own = pooled[:, :, 0, slots.start : slots.start + slots.length].sum(-1)
        assert (terms.prompt_share[:, :, 0] - own).abs().max() <= 1e-5
        assert own.min() > 0  # a real test: the prompts do receive attention


def test_the_probe_changes_nothing_and_records_every_prompted_block(tiny_backbone):
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    model = build_model(tiny_backbone, "maple", CLASSNAMES, options={"depth": 3}).eval()
    with torch.no_grad():
        plain = model(images)
        with mechanism.recording(model) as record:
            probed = model(images)
    assert torch.equal(plain, probed) and model.probe is None
    assert record["vision"]["layers"] == 12 and list(record["vision"]["blocks"]) == [str(k) for k in range(12)]
    assert list(record["text"]["blocks"]) == [str(k) for k in range(12)]  # carried prompts: every block
    assert record["vision"]["blocks"]["1"]["n"] == 4 and record["text"]["blocks"]["1"]["n"] == len(CLASSNAMES)


def test_recorded_statistics_equal_those_of_the_direct_terms(tiny_backbone):
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    capture, _ = _captured(tiny_backbone, "ivlp", images)
    block, x, slots = capture.seen[("vision", 4)]
    torch.manual_seed(0)
    model = build_model(tiny_backbone, "ivlp", CLASSNAMES).eval()
    with torch.no_grad(), mechanism.recording(model) as record:
        model(images)
    entry = record["vision"]["blocks"]["4"]
    with torch.no_grad():
        lam, prompt, rest = _direct(block, x, slots, "vision")
    for hd in range(lam.shape[1]):
        assert entry["lambda"]["per_head"][hd]["mean"] == pytest.approx(float(lam[:, hd].mean()), abs=1e-5)
        assert entry["lambda"]["per_head"][hd]["std"] == pytest.approx(float(lam[:, hd].std(unbiased=False)), abs=1e-5)
        cosines = [float(F.cosine_similarity(prompt[a, hd], prompt[b, hd], dim=0))
                   for a, b in itertools.combinations(range(5), 2)]
        assert entry["stability"]["per_head"][hd] == pytest.approx(sum(cosines) / len(cosines), abs=1e-5)
    out = lambda t: t.flatten(1) @ block.attn.out_proj.weight.t()  # noqa: E731
    ratio = out(prompt).norm(dim=-1) / out(rest).norm(dim=-1)
    assert entry["norm_ratio"]["over_heads"]["mean"] == pytest.approx(float(ratio.mean()), abs=1e-5)


def test_foreground_share_for_method_and_zero_shot_on_the_same_images(tiny_backbone):
    """The patch share is read from the prompted pass and from the unprompted tower on the same
    images; a mask on one patch gives exactly that patch's share of the patch attention."""
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    foreground = torch.zeros(2, 16)
    foreground[:, 5] = 1.0
    torch.manual_seed(0)
    model = build_model(tiny_backbone, "vpt", CLASSNAMES).eval()
    zero = build_model(tiny_backbone, "zsclip", CLASSNAMES).eval()
    capture = Capture()
    zero.probe = capture
    with torch.no_grad():
        zero.encode_image(images)
        with mechanism.recording(model, foreground) as record:
            model(images)
    block, x, slots = capture.seen[("vision", 2)]
    with torch.no_grad():
        h = block.ln_1(x)
        _, weights = block.attn(h, h, h, need_weights=True, average_attn_weights=False)
    patches = weights[:, :, 0, 1:17]
    expected = (patches[:, :, 5] / patches.sum(-1)).mean()
    got = record["vision"]["blocks"]["2"]["foreground"]["zsclip"]["over_heads"]["mean"]
    assert got == pytest.approx(float(expected), abs=1e-5)
    assert 0 < record["vision"]["blocks"]["2"]["foreground"]["method"]["over_heads"]["mean"] < 1


def test_the_zero_shot_reference_is_computed_once_per_image_set(tiny_backbone):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    foreground = torch.rand(2, 16, generator=torch.Generator().manual_seed(7))
    reference: dict = {}
    records = []
    for seed in (0, 1):  # two "seeds" of a method: other prompts, the same test images
        torch.manual_seed(seed)
        model = build_model(tiny_backbone, "ivlp", CLASSNAMES).eval()
        with torch.no_grad(), mechanism.recording(model, foreground, reference) as record:
            assert model.probe.reference_towers == (frozenset({"vision"}) if seed == 0 else frozenset())
            model(images)
        records.append(record)
    shares = [r["vision"]["blocks"]["3"]["foreground"] for r in records]
    assert shares[0]["zsclip"] == shares[1]["zsclip"] and shares[0]["zsclip"]["over_heads"]["n"] == 2
    assert shares[0]["method"] != shares[1]["method"]
