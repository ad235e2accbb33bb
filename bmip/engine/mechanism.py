"""What the prompts do inside the blocks, on record for every evaluation of a prompt method
(`mechanism.json` beside metrics.json): the analysis of Ma et al. (arXiv 2312.11570), as we
reconstruct it — the paper gives no equations, definitions or code.

Read by hooks on the one evaluation pass (`PromptedCLIP.probe`, `bmip.prompting.attention_terms`):
for the pooled token q (vision: CLS; text: the EOT token that becomes the feature) of every test
image or class prompt, in every block of a tower that has prompt positions (deep prompts, and shallow
ones such as CoOp's context in every block they pass through), per head h:

* lambda_h: q's attention mass on the prompt positions;
* norm ratio ||P_h|| / ||R_h|| of the prompt term P_h = sum_i a_i v^P_i (= lambda B) to the
  re-weighted term R_h = sum_j a_j v_j over the original tokens; over heads, in the block's output
  space: ||W_o concat_h P_h|| / ||W_o concat_h R_h||;
* stability: the mean pairwise cosine of the prompt term across inputs (per head: of P_h; over
  heads: of W_o concat_h P_h). Exact over all inputs, streamed: for unit vectors u_1..u_n,
  sum_{a != b} u_a.u_b = ||sum u||^2 - n, so no subsample is needed;
* where the dataset has object masks (miniworld): the foreground share of q's attention over the
  image patches, sum_p a_p f_p / sum_p a_p (f_p: the patch's foreground fraction), for the method
  and for zero-shot CLIP on the same images (the hook sees the unprompted tower too). Other datasets
  record `foreground: null` and `"masks": false`: there is no proxy.

Bias tuning has no prompt positions; its blocks record ||b|| / ||residual stream at q|| for the
vector added after the attention and the one added after the MLP.

Format `bmip-mechanism/1` (JSON):

    {"format": "bmip-mechanism/1", "protocol", "method", "dataset", "seed", "masks": bool,
     "parts": {<label space as in gates.json>: {"vision": TOWER, "text": TOWER}}}
    TOWER = {"layers": <blocks in the tower>, "blocks": {"<k>": BLOCK, ...}}   (null: not prompted)
    BLOCK = {"n": <inputs>, "heads": H,
             "lambda": SPLIT, "norm_ratio": SPLIT,
             "stability": {"per_head": [H floats], "over_heads": float},
             "foreground": {"method": SPLIT, "zsclip": SPLIT} or null}           (vision, masks)
          | {"n": <inputs>, "bias_ratio": {"after_attention": STATS, "after_mlp": STATS}} (bias tuning)
    SPLIT = {"per_head": [STATS x H], "over_heads": STATS}   (lambda over heads: the head mean)
    STATS = {"n", "mean", "std" (population)}

This module imports no torch at load time: the audit and the figures read records without it.
"""
from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bmip.methods.base import Slots

FORMAT = "bmip-mechanism/1"
TOWERS = ("vision", "text")
REFERENCE = "vision/zsclip"  # the unprompted vision tower the probe also sees (foreground share)
UNPROMPTED = ("zsclip",)  # base methods with nothing learnt: no record
PARTS = {"base2novel": ("base", "novel"), "open_world": ("joint",), "cross_dataset": ("all",),
         "domain_generalization": ("all",)}


def has_mechanism(method: str) -> bool:
    """True for every prompt method (any base but zero-shot CLIP, with or without a regulariser)."""
    return method.split("+", 1)[0] not in UNPROMPTED


class Moments:
    """Count, sum and sum of squares of per-element values (float64, on the values' device)."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: "torch.Tensor | None" = None

    def add(self, values: "torch.Tensor") -> None:
        """`values`: (n, *shape); one summary per element of shape."""
        import torch

        v = values.detach().double()
        now = torch.stack([v.sum(dim=0), (v * v).sum(dim=0)])
        self.sums = now if self.sums is None else self.sums + now
        self.n += v.shape[0]

    def summary(self) -> Any:
        """{"n", "mean", "std"} per element (a list for a vector, one dict for a scalar)."""
        mean = self.sums[0] / self.n
        std = (self.sums[1] / self.n - mean * mean).clamp_min(0).sqrt()
        rows = [{"n": self.n, "mean": m, "std": s} for m, s in zip(mean.flatten().tolist(), std.flatten().tolist())]
        return rows if mean.dim() else rows[0]


class Coherence:
    """Mean pairwise cosine of vectors, streamed: (||sum of unit vectors||^2 - n) / (n (n - 1))."""

    def __init__(self) -> None:
        self.n = 0
        self.total: "torch.Tensor | None" = None

    def add(self, vectors: "torch.Tensor") -> None:
        """`vectors`: (n, ..., dim); one coherence per leading index after the first."""
        import torch.nn.functional as F

        unit = F.normalize(vectors.detach().double(), dim=-1).sum(dim=0)
        self.total = unit if self.total is None else self.total + unit
        self.n += vectors.shape[0]

    def summary(self) -> Any:
        if self.n < 2:
            return None
        value = ((self.total * self.total).sum(dim=-1) - self.n) / (self.n * (self.n - 1))
        return value.tolist()


class _Block:
    """What one block of one tower accumulates over a label space."""

    def __init__(self) -> None:
        self.lam_head, self.lam_all = Moments(), Moments()
        self.ratio_head, self.ratio_all = Moments(), Moments()
        self.stab_head, self.stab_all = Coherence(), Coherence()
        self.fg = {"method": (Moments(), Moments()), "zsclip": (Moments(), Moments())}
        self.bias = {"after_attention": Moments(), "after_mlp": Moments()}
        self.heads = 0

    def summary_ready(self) -> bool:
        """False for a block only the zero-shot reference pass touched: nothing of the method's."""
        return self.lam_head.n > 0 or self.bias["after_attention"].n > 0

    def summary(self) -> dict[str, Any]:
        if self.lam_head.n == 0:  # a bias-tuned block
            return {"n": self.bias["after_attention"].n,
                    "bias_ratio": {key: m.summary() for key, m in self.bias.items()}}
        split = lambda pair: {"per_head": pair[0].summary(), "over_heads": pair[1].summary()}  # noqa: E731
        fg = self.fg["method"][0]
        return {"n": self.lam_head.n, "heads": self.heads,
                "lambda": split((self.lam_head, self.lam_all)), "norm_ratio": split((self.ratio_head, self.ratio_all)),
                "stability": {"per_head": self.stab_head.summary(), "over_heads": self.stab_all.summary()},
                "foreground": {key: split(pair) for key, pair in self.fg.items()} if fg.n else None}


def foreground_share(weights: "torch.Tensor", foreground: "torch.Tensor") -> "torch.Tensor":
    """(B, H) share of the query's attention over the patches (positions 1..P) that lands on the
    foreground; `weights` (B, H, 1, N), `foreground` (B, P) patch foreground fractions."""
    patches = weights[:, :, 0, 1 : 1 + foreground.shape[1]]
    return (patches * foreground.unsqueeze(1)).sum(-1) / patches.sum(-1)


class MechanismProbe:
    """The hooks of the mechanism record: called by `run_blocks` with every block's input.

    `foreground`: (n_images, n_patches) patch foreground fractions of the evaluated images in the
    order they pass (or None: no masks); the probe consumes one batch of them each time a vision
    tower starts (block 0), so it must see the images exactly once and in order.
    """

    def __init__(self, foreground: "torch.Tensor | None" = None,
                 reference: "dict[int, tuple[Moments, Moments]] | None" = None) -> None:
        self.blocks: dict[tuple[str, int], _Block] = {}
        self.layers: dict[str, int] = {}
        self.foreground = foreground
        # Zero-shot CLIP's foreground share on these images is the same for every method and seed:
        # `reference` (block -> moments) is filled by the first probe and reused by the next ones.
        self.reference = reference if reference is not None else {}
        reused = foreground is not None and bool(self.reference)
        for k, moments in self.reference.items():
            self._entry("vision", k).fg["zsclip"] = moments
        self.reference_towers = frozenset({"vision"} if foreground is not None and not reused else ())
        self._cursor = {"vision": 0, REFERENCE: 0}
        self._batch: dict[str, "torch.Tensor | None"] = {}

    def _entry(self, tower: str, k: int) -> _Block:
        return self.blocks.setdefault((tower, k), _Block())

    def _foreground_batch(self, tower: str, k: int, n: int, device: "torch.device") -> "torch.Tensor | None":
        if self.foreground is None or tower not in self._cursor:
            return None
        if k == 0:
            start = self._cursor[tower]
            if start + n > len(self.foreground):
                raise RuntimeError(f"the mechanism probe saw more images ({start + n}) than it has masks for "
                                   f"({len(self.foreground)}): it must see each evaluated image once, in order")
            self._batch[tower] = self.foreground[start : start + n].to(device)
            self._cursor[tower] = start + n
        return self._batch[tower]

    def __call__(self, tower: str, k: int, block: "nn.Module", x: "torch.Tensor", slots: "Slots",
                 biases: "tuple[torch.Tensor, torch.Tensor] | None") -> None:
        import torch

        from bmip.prompting import attention_terms, pooled_positions

        with torch.no_grad():
            base = tower.split("/")[0]
            rows = pooled_positions(base, x, slots)
            foreground = self._foreground_batch(tower, k, x.shape[0], x.device)
            if tower == REFERENCE:  # the unprompted tower: only its foreground share is kept
                if foreground is not None:
                    terms = attention_terms(block, x, slots, rows)
                    share = foreground_share(terms.weights, foreground)
                    moments = self.reference.setdefault(k, self._entry("vision", k).fg["zsclip"])
                    moments[0].add(share)
                    moments[1].add(share.mean(dim=1))
                return
            self.layers[tower] = max(self.layers.get(tower, 0), k + 1)
            if biases is not None:
                self._bias(tower, k, block, x, slots, rows, biases)
            if not slots.length:
                return
            terms = attention_terms(block, x, slots, rows)
            entry = self._entry(tower, k)
            entry.heads = terms.prompt_share.shape[1]
            lam = terms.prompt_share[:, :, 0]  # (B, H)
            entry.lam_head.add(lam)
            entry.lam_all.add(lam.mean(dim=1))
            prompt, rest = terms.prompt_term[:, :, 0], terms.reweighted[:, :, 0]  # (B, H, e)
            entry.ratio_head.add(prompt.norm(dim=-1) / rest.norm(dim=-1))
            prompt_out = terms.output_space(terms.prompt_term)[:, 0]
            rest_out = terms.output_space(terms.reweighted)[:, 0]
            entry.ratio_all.add(prompt_out.norm(dim=-1) / rest_out.norm(dim=-1))
            entry.stab_head.add(prompt)
            entry.stab_all.add(prompt_out)
            if foreground is not None and tower == "vision":
                share = foreground_share(terms.weights, foreground)
                entry.fg["method"][0].add(share)
                entry.fg["method"][1].add(share.mean(dim=1))

    def _bias(self, tower: str, k: int, block: "nn.Module", x: "torch.Tensor", slots: "Slots",
              rows: "torch.Tensor", biases: "tuple[torch.Tensor, torch.Tensor]") -> None:
        """||b|| / ||residual stream at q|| where each bias vector is added (bias tuning)."""
        import torch

        from bmip.prompting import attention_terms

        terms = attention_terms(block, x, slots, rows)
        attn_out = terms.output_space(terms.reweighted + terms.prompt_term)[:, 0]
        if block.attn.out_proj.bias is not None:
            attn_out = attn_out + block.attn.out_proj.bias.float()
        x_q = torch.gather(x.float(), 1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))[:, 0]
        after_attn, after_mlp = (b.float() for b in biases)
        mid = x_q + block.ls_1(attn_out) + after_attn
        out = mid + block.ls_2(block.mlp(block.ln_2(mid.to(x.dtype)))).float() + after_mlp
        entry = self._entry(tower, k)
        entry.bias["after_attention"].add(after_attn.norm() / mid.norm(dim=-1))
        entry.bias["after_mlp"].add(after_mlp.norm() / out.norm(dim=-1))

    def summary(self) -> dict[str, Any]:
        """Per tower: {"layers", "blocks": {k: BLOCK}}, or None for a tower with nothing recorded."""
        out: dict[str, Any] = {}
        for tower in TOWERS:
            ks = sorted(k for t, k in self.blocks if t == tower and self.blocks[(t, k)].summary_ready())
            out[tower] = ({"layers": self.layers[tower], "blocks": {str(k): self.blocks[(tower, k)].summary() for k in ks}}
                          if ks else None)
        return out


@contextlib.contextmanager
def recording(model: Any, foreground: "torch.Tensor | None" = None,
              reference: "dict[int, tuple[Moments, Moments]] | None" = None) -> Iterator[dict[str, Any]]:
    """Attach a `MechanismProbe` to `model` (a PromptedCLIP) for the passes inside the block; the
    yielded dict is filled with the per-tower summary when the block exits. The foreground share
    (and its zero-shot reference pass) only for methods with vision prompt positions; `reference`:
    zero-shot CLIP's foreground statistics for the same images from an earlier recording (filled
    when empty), so that the reference pass runs once per image set, not once per seed."""
    probe = MechanismProbe(foreground if model.method.vision_tokens else None, reference)
    model.probe = probe
    result: dict[str, Any] = {}
    try:
        yield result
    finally:
        model.probe = None
    result.update(probe.summary())


# ---------------------------------------------------------------- checking (no torch)
def _stats_ok(stats: Any, low: float = -math.inf, high: float = math.inf) -> bool:
    return (isinstance(stats, dict) and isinstance(stats.get("n"), int) and stats["n"] > 0
            and all(isinstance(stats.get(key), (int, float)) and math.isfinite(stats[key]) for key in ("mean", "std"))
            and low <= stats["mean"] <= high and stats["std"] >= 0)


def _split_ok(split: Any, heads: int, low: float, high: float) -> bool:
    return (isinstance(split, dict) and isinstance(split.get("per_head"), list) and len(split["per_head"]) == heads
            and all(_stats_ok(s, low, high) for s in split["per_head"]) and _stats_ok(split.get("over_heads"), low, high))


def block_problems(where: str, entry: Any, masks: bool, tower: str) -> list[str]:
    """What is missing or impossible in one block's entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("n"), int) or entry["n"] <= 0:
        return [f"{where}: needs n > 0"]
    if "bias_ratio" in entry:
        ratios = entry["bias_ratio"] or {}
        if not all(_stats_ok(ratios.get(key), 0.0) for key in ("after_attention", "after_mlp")):
            return [f"{where}: bias_ratio needs after_attention and after_mlp {{n, mean, std}} >= 0"]
        return []
    heads = entry.get("heads")
    if not isinstance(heads, int) or heads <= 0:
        return [f"{where}: needs heads > 0"]
    out = []
    if not _split_ok(entry.get("lambda"), heads, 0.0, 1.0):
        out.append(f"{where}: lambda needs per_head ({heads}) and over_heads {{n, mean, std}} in [0, 1]")
    if not _split_ok(entry.get("norm_ratio"), heads, 0.0, math.inf):
        out.append(f"{where}: norm_ratio needs per_head ({heads}) and over_heads {{n, mean, std}} >= 0")
    stability = entry.get("stability") or {}
    values = stability.get("per_head")
    if entry["n"] > 1 and not (isinstance(values, list) and len(values) == heads
                               and all(isinstance(v, (int, float)) and -1 - 1e-6 <= v <= 1 + 1e-6
                                       for v in [*values, stability.get("over_heads", math.nan)])):
        out.append(f"{where}: stability needs per_head ({heads}) and over_heads cosines in [-1, 1]")
    foreground = entry.get("foreground")
    if masks and tower == "vision":
        if not (isinstance(foreground, dict)
                and all(_split_ok(foreground.get(key), heads, 0.0, 1.0) for key in ("method", "zsclip"))):
            out.append(f"{where}: the dataset has object masks, so foreground needs method and zsclip shares")
    elif foreground is not None:
        out.append(f"{where}: foreground recorded without object masks")
    return out


def problems(doc: Any, identity: dict[str, Any], biased: dict[str, int] | None = None) -> list[str]:
    """What is wrong with a mechanism document for the run `identity` (protocol, method, dataset,
    seed): its protocol's label spaces, in each at least one recorded tower, every recorded
    prompt tower with every block 0..layers-1 (bias tuning: `biased` gives each tower's depth,
    blocks 0..depth-1), and each block entry complete and in range."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return [f"not a {FORMAT} document"]
    out = [f"records {key} {doc.get(key)!r}, but the run is {value!r}"
           for key, value in identity.items() if doc.get(key) != value]
    masks = doc.get("masks")
    if not isinstance(masks, bool):
        out.append("'masks' must be true or false (whether the dataset has object masks)")
    recorded = doc.get("parts")
    if not isinstance(recorded, dict):
        return out + ["no 'parts'"]
    parts = sorted(PARTS.get(identity.get("protocol"), ()))
    if sorted(recorded) != parts:
        out.append(f"label spaces {sorted(recorded)}; a {identity.get('protocol')} evaluation has {parts}")
    for part, towers in sorted(recorded.items()):
        towers = towers if isinstance(towers, dict) else {}
        if not any(towers.get(t) for t in TOWERS):
            out.append(f"{part}: no tower recorded")
        for tower in TOWERS:
            record = towers.get(tower)
            if not record:
                if biased and biased.get(tower):
                    out.append(f"{part}/{tower}: bias-tuned blocks 0..{biased[tower] - 1} not recorded")
                continue
            blocks, layers = record.get("blocks") or {}, record.get("layers")
            want = biased.get(tower, 0) if biased is not None else layers
            expected = [str(k) for k in range(want)] if isinstance(want, int) else None
            if expected is None or sorted(blocks, key=lambda k: (len(k), k)) != expected:
                out.append(f"{part}/{tower}: blocks {sorted(blocks, key=lambda k: (len(k), k))}, expected {expected} "
                           "(every block the prompts pass through; bias tuning: its depth)")
            for k, entry in sorted(blocks.items()):
                out += block_problems(f"{part}/{tower}/{k}", entry, bool(masks), tower)
    return out


def write_mechanism(path: Any, identity: dict[str, Any], masks: bool, parts: dict[str, Any]) -> None:
    """Write a mechanism document atomically."""
    from bmip.io import write_json

    write_json(path, {"format": FORMAT, **identity, "masks": masks, "parts": parts})
