"""Causal checks of the prompt mechanism at inference (`bmip analyze`): is the prompt term a bias?

Ma et al. (arXiv 2312.11570) argue that multi-modal prompts act mainly as a dataset bias added to
the token updates. Their interventions are not published; these are ours (a reconstruction). In
every block where a tower has prompt positions, for every query token that is not a prompt token,
the attention output o = R + P (R: the re-weighted original tokens, P: the prompt term; see
`bmip.prompting.attention_terms`) is replaced by

* `mean_prompt_term`: R + mean(P), the prompt term's mean over the label space's test inputs (per
  block, head and position; a first pass over the same inputs computes it);
* `no_prompt_term`: R / (1 - lambda), the attention renormalised over the original tokens;
* `zero_shot_reweighting`: (1 - lambda) A_zs + P, the prompt term kept and the re-weighting taken
  from zero-shot CLIP: A_zs is the attention of the unprompted model on the same input (text: the
  words the prompt positions replaced), at that block, over the original tokens.

Accuracy is reported in base-to-novel's two label spaces, from the base2novel checkpoint, beside
the unchanged model's (`as_trained`). If the prompts act as a bias, `mean_prompt_term` keeps most
of the gain and `no_prompt_term` loses it. Methods without prompt positions (zero-shot CLIP, bias
tuning) have nothing to intervene on and are refused.

Format `bmip-causal/1` (`results/<experiment>/analysis/<method>/<dataset>/seed<N>/causal.json`):

    {"format", "method", "dataset", "seed", "protocol": "base2novel", "checkpoint_sha256",
     "checks": {<check>: {"base": acc, "novel": acc, "hm": hm}}}
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bmip.checkpoint import load_model
from bmip.config import ConfigError
from bmip.data import subsample_classes
from bmip.engine import paths
from bmip.engine.runtime import backbone_from, compute_setup, fewshot_data, predict
from bmip.metrics import harmonic_mean
from bmip.io import file_sha256, write_json
from bmip.methods.base import Slots
from bmip.prompting import AttentionTerms, attention_terms

log = logging.getLogger(__name__)

FORMAT = "bmip-causal/1"
CAUSAL = "causal.json"
CHECKS = ("as_trained", "mean_prompt_term", "no_prompt_term", "zero_shot_reweighting")
INTERVENTIONS = CHECKS[1:]


def analysis_dir(config: dict[str, Any], method: str, dataset: str, seed: int) -> Path:
    return paths.experiment_dir(config) / "analysis" / method / dataset / f"seed{seed}"


def _all_rows(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)


def _prompt_rows(x: torch.Tensor, slots: Slots) -> torch.Tensor:
    rows = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
    rows[slots.start : slots.start + slots.length] = True
    return rows


class PromptTermMean:
    """A probe that sums the prompt term P of every (tower, block, position) over its inputs."""

    reference_towers: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.sums: dict[tuple[str, int], torch.Tensor] = {}
        self.counts: dict[tuple[str, int], int] = {}

    def __call__(self, tower: str, k: int, block: nn.Module, x: torch.Tensor, slots: Slots, biases: Any) -> None:
        if not slots.length:
            return None
        with torch.no_grad():
            total = attention_terms(block, x, slots, _all_rows(x)).prompt_term.sum(dim=0)  # (H, N, e)
        key = (tower, k)
        if key in self.sums and self.sums[key].shape != total.shape:
            raise RuntimeError(f"{tower} block {k}: sequences of another length ({total.shape[1]} vs "
                               f"{self.sums[key].shape[1]}) cannot share a per-position mean")
        self.sums[key] = self.sums.get(key, 0) + total
        self.counts[key] = self.counts.get(key, 0) + x.shape[0]
        return None

    def means(self) -> dict[tuple[str, int], torch.Tensor]:
        return {key: total / self.counts[key] for key, total in self.sums.items()}


class Intervention:
    """A probe that replaces, in every prompted block, the attention output of every original token
    by one of the `INTERVENTIONS` (or keeps it: "identity", for tests) and runs the rest of the
    block (residual, MLP) as open_clip does."""

    def __init__(self, check: str, means: dict[tuple[str, int], torch.Tensor] | None = None) -> None:
        if check not in (*INTERVENTIONS, "identity"):
            raise ValueError(f"unknown intervention {check!r}; choose from {INTERVENTIONS}")
        if check == "mean_prompt_term" and means is None:
            raise ValueError("mean_prompt_term needs the prompt-term means (PromptTermMean)")
        self.check, self.means = check, means
        self.reference_towers = frozenset({"vision", "text"} if check == "zero_shot_reweighting" else ())
        self.reference: dict[tuple[str, int], tuple[torch.Tensor, Slots]] = {}

    def __call__(self, tower: str, k: int, block: nn.Module, x: torch.Tensor, slots: Slots,
                 biases: Any) -> torch.Tensor | None:
        if tower.endswith("/zsclip"):
            self.reference[(tower.split("/")[0], k)] = (x, slots)
            return None
        if not slots.length:
            return None
        with torch.no_grad():
            terms = attention_terms(block, x, slots, _all_rows(x))
            new = self._replace(tower, k, block, x, terms)
            keep = _prompt_rows(x, slots).view(1, 1, -1, 1)
            new = torch.where(keep, terms.prompt_term + terms.reweighted, new)
            out = terms.output_space(new)
            if block.attn.out_proj.bias is not None:
                out = out + block.attn.out_proj.bias.float()
            mid = x.float() + block.ls_1(out)
            return (mid + block.ls_2(block.mlp(block.ln_2(mid.to(x.dtype)))).float()).to(x.dtype)

    def _replace(self, tower: str, k: int, block: nn.Module, x: torch.Tensor, terms: AttentionTerms) -> torch.Tensor:
        prompt, rest, share = terms.prompt_term, terms.reweighted, terms.prompt_share.unsqueeze(-1)
        if self.check == "identity":
            return prompt + rest
        if self.check == "no_prompt_term":
            return rest / (1 - share)
        if self.check == "mean_prompt_term":
            return rest + self.means[(tower, k)][:, : x.shape[1]].unsqueeze(0)
        # zero_shot_reweighting: the zero-shot model's attention over the original tokens
        x_zs, slots_zs = self.reference[(tower, k)]
        zs = attention_terms(block, x_zs, slots_zs, _all_rows(x_zs))
        renormalised = zs.reweighted / (1 - zs.prompt_share.unsqueeze(-1))  # (B_zs, H, N_zs, e)
        if renormalised.shape[0] != x.shape[0]:  # CoCoOp: images x classes sequences over the classes'
            renormalised = renormalised.repeat(x.shape[0] // renormalised.shape[0], 1, 1, 1)
        if renormalised.shape[2] < x.shape[1]:  # vision: the prompt rows (kept as they are) last
            pad = x.shape[1] - renormalised.shape[2]
            renormalised = torch.cat([renormalised, renormalised.new_zeros(*renormalised.shape[:2], pad,
                                                                            renormalised.shape[-1])], dim=2)
        return (1 - share) * renormalised + prompt


def _has_prompt_positions(model: Any) -> bool:
    return bool(model.method.text_tokens or model.method.vision_tokens)


def analyze(config: dict[str, Any], method: str, dataset: str, seed: int, checkpoint: Path | None = None,
            out_dir: Path | None = None) -> Path:
    """Write `causal.json` for one base-to-novel model: accuracy with each intervention."""
    checkpoint = Path(checkpoint) if checkpoint else paths.checkpoint_for(config, "base2novel", method, dataset, seed)
    out = Path(out_dir) if out_dir else analysis_dir(config, method, dataset, seed)
    device, precision = compute_setup(config)
    backbone = backbone_from(config, device)
    model = load_model(checkpoint, backbone, expect_method=method)
    if not _has_prompt_positions(model):
        raise ConfigError(f"analysis: method {method!r} has no prompt positions, so there is no prompt term to "
                          "intervene on; choose prompt methods under analysis.methods")
    data, train_items, val_items = fewshot_data(config, dataset, seed)
    batch = config["eval_batch_size"]

    def accuracy(items, names, probe) -> float:
        model.set_classnames(names, data.template)
        model.probe = probe
        try:
            preds = predict(model, items, data.image_root, batch=batch, workers=config["workers"], device=device,
                            precision=precision, desc=f"{dataset} {method}")
        finally:
            model.probe = None
        labels = torch.tensor([it.label for it in items])
        return 100.0 * int((preds == labels).sum()) / len(items) if len(items) else float("nan")

    checks: dict[str, dict[str, float]] = {check: {} for check in CHECKS}
    for part, subsample in (("base", "base"), ("novel", "new")):
        _, _, test, names = subsample_classes(train_items, val_items, data.test, subsample)
        checks["as_trained"][part] = accuracy(test, names, None)
        means = PromptTermMean()
        accuracy(test, names, means)
        for check in INTERVENTIONS:
            checks[check][part] = accuracy(test, names, Intervention(check, means.means()))
            log.info("%s %s %s: %s %.2f (as trained %.2f)", method, dataset, part, check, checks[check][part],
                     checks["as_trained"][part])
    for values in checks.values():
        values["hm"] = harmonic_mean(values["base"], values["novel"])
    write_json(out / CAUSAL, {"format": FORMAT, "protocol": "base2novel", "method": method, "dataset": dataset,
                              "seed": seed, "checkpoint_sha256": file_sha256(checkpoint), "checks": checks})
    return out
