"""What the prompts do inside the blocks, on record for every evaluation of a prompt method
(`mechanism.json` beside metrics.json): the analysis of Ma et al. (arXiv 2312.11570), as we
reconstruct it — the paper gives no equations, definitions or code.

Read by hooks on the one evaluation pass (`PromptedCLIP.probe`, `bmip.prompting.attention_terms`;
bmip.engine.scoring: one pass over the test set records every label space at once, each input's
values added to the spaces holding its class; official_compat BMIP: one pass per label space):
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

A method whose image tower is frozen (CoOp, CoCoOp, deep language prompting: no vision prompt,
bias or adapter) records `"vision": null`: the tower is not prompted, its evaluation reads the
cached frozen image features and runs no image forward, and its CLS attention — foreground share
included — is zero-shot CLIP's by construction. Its text tower is recorded as for every method.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from bmip.engine.records import header_problems
from bmip.methods import method_of, records_mechanism

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bmip.methods.base import Slots

FORMAT = "bmip-mechanism/1"
TOWERS = ("vision", "text")
REFERENCE = "vision/zsclip"  # the unprompted vision tower the probe also sees (foreground share)


def has_mechanism(method: str) -> bool:
    """True for every prompt method (any base but zero-shot CLIP, with or without a regulariser):
    the registry's trait, bmip.methods.records_mechanism."""
    return records_mechanism(method)


def _grouped(values: "torch.Tensor", groups: "torch.Tensor | None") -> "torch.Tensor":
    """(n, S, *shape) float64: each input's values under every label space containing it, exact
    zeros under the others (`groups`: (n, S) bool membership; None: one space of all inputs)."""
    import torch

    v = values.detach().double().unsqueeze(1)
    if groups is None:
        return v
    mask = groups.to(v.device).view(*groups.shape, *([1] * (v.dim() - 2)))
    return torch.where(mask, v, torch.zeros((), dtype=v.dtype, device=v.device))


def _counts(values: "torch.Tensor", groups: "torch.Tensor | None") -> "torch.Tensor":
    import torch

    if groups is None:
        return torch.tensor([values.shape[0]], device=values.device)
    return groups.sum(dim=0)  # on the device: read (one sync) only by the summary


class Moments:
    """Count, sum and sum of squares of per-element values per label space (float64, on the
    values' device): `add(values, groups)` adds each input to the spaces `groups` puts it in."""

    def __init__(self) -> None:
        self.n: "torch.Tensor | None" = None  # (S,) inputs per label space
        self.sums: "torch.Tensor | None" = None  # (2, S, *shape)

    @property
    def seen(self) -> bool:
        return self.n is not None

    def count(self, space: int = 0) -> int:
        return int(self.n[space]) if self.n is not None else 0

    def add(self, values: "torch.Tensor", groups: "torch.Tensor | None" = None) -> None:
        """`values`: (n, *shape), one summary per element of shape; `groups`: (n, S) bool."""
        import torch

        v = _grouped(values, groups)
        now = torch.stack([v.sum(dim=0), (v * v).sum(dim=0)])
        self.sums = now if self.sums is None else self.sums + now
        counts = _counts(values, groups)
        self.n = counts if self.n is None else self.n + counts

    def summary(self, space: int = 0) -> Any:
        """{"n", "mean", "std"} per element (a list for a vector, one dict for a scalar) over the
        inputs of label space `space`; None when it has none."""
        n = self.count(space)
        if n == 0:
            return None
        mean = self.sums[0, space] / n
        std = (self.sums[1, space] / n - mean * mean).clamp_min(0).sqrt()
        rows = [{"n": n, "mean": m, "std": s} for m, s in zip(mean.flatten().tolist(), std.flatten().tolist())]
        return rows if mean.dim() else rows[0]


class Coherence:
    """Mean pairwise cosine of vectors per label space, streamed: (||sum of unit vectors||^2 - n) /
    (n (n - 1)), with one running sum of unit vectors per space."""

    def __init__(self) -> None:
        self.n: "torch.Tensor | None" = None
        self.total: "torch.Tensor | None" = None  # (S, ..., dim)

    def add(self, vectors: "torch.Tensor", groups: "torch.Tensor | None" = None) -> None:
        """`vectors`: (n, ..., dim); one coherence per leading index after the first."""
        import torch.nn.functional as F

        unit = _grouped(F.normalize(vectors.detach().double(), dim=-1), groups).sum(dim=0)
        self.total = unit if self.total is None else self.total + unit
        counts = _counts(vectors, groups)
        self.n = counts if self.n is None else self.n + counts

    def summary(self, space: int = 0) -> Any:
        n = int(self.n[space]) if self.n is not None else 0
        if n < 2:
            return None
        total = self.total[space]
        value = ((total * total).sum(dim=-1) - n) / (n * (n - 1))
        return value.tolist()


class _Block:
    """What one block of one tower accumulates, per label space."""

    def __init__(self) -> None:
        self.lam_head, self.lam_all = Moments(), Moments()
        self.ratio_head, self.ratio_all = Moments(), Moments()
        self.stab_head, self.stab_all = Coherence(), Coherence()
        self.fg = {"method": (Moments(), Moments()), "zsclip": (Moments(), Moments())}
        self.bias = {"after_attention": Moments(), "after_mlp": Moments()}
        self.heads = 0

    def summary_ready(self) -> bool:
        """False for a block only the zero-shot reference pass touched: nothing of the method's."""
        return self.lam_head.seen or self.bias["after_attention"].seen

    def summary(self, space: int = 0) -> dict[str, Any]:
        if not self.lam_head.seen:  # a bias-tuned block
            return {"n": self.bias["after_attention"].count(space),
                    "bias_ratio": {key: m.summary(space) for key, m in self.bias.items()}}
        split = lambda pair: {"per_head": pair[0].summary(space), "over_heads": pair[1].summary(space)}  # noqa: E731
        return {"n": self.lam_head.count(space), "heads": self.heads,
                "lambda": split((self.lam_head, self.lam_all)), "norm_ratio": split((self.ratio_head, self.ratio_all)),
                "stability": {"per_head": self.stab_head.summary(space), "over_heads": self.stab_all.summary(space)},
                "foreground": ({key: split(pair) for key, pair in self.fg.items()}
                               if self.fg["method"][0].count(space) else None)}


@dataclass(frozen=True)
class LabelSpaces:
    """The label spaces one pass over a test set records at once (bmip.engine.scoring builds them
    from the same column selections that pick each space's rows of the score matrix): `images`
    (n_images, S) and `classes` (n_classes, S) bool membership, in the order the images pass and
    in the model's class order; a CoCoOp sequence (image i, class c) is in the spaces of both."""

    names: tuple[str, ...]
    images: "torch.Tensor"
    classes: "torch.Tensor"

    def key(self) -> tuple:
        """A hashable identity (the zero-shot reference cache's key)."""
        return (self.names, tuple(self.images.flatten().tolist()), tuple(self.classes.flatten().tolist()))


def foreground_share(weights: "torch.Tensor", foreground: "torch.Tensor", first: int = 1) -> "torch.Tensor":
    """(B, H) share of the query's attention over the patches (positions first..first+P-1: 1..P,
    or after tokens a method inserted behind CLS, MMRL) that lands on the foreground; `weights`
    (B, H, 1, N), `foreground` (B, P) patch foreground fractions."""
    patches = weights[:, :, 0, first : first + foreground.shape[1]]
    return (patches * foreground.unsqueeze(1)).sum(-1) / patches.sum(-1)


def _first_patch(slots: "Slots") -> int:
    """Where a vision sequence's patches start: after CLS, and after prompt slots a method inserted
    right behind CLS (MMRL's representation tokens); slots at the end (VPT, BMIP) do not move them."""
    return 1 + slots.length if slots.start == 1 else 1


class MechanismProbe:
    """The hooks of the mechanism record: called by `run_blocks` with every block's input.

    `foreground`: (n_images, n_patches) patch foreground fractions of the evaluated images in the
    order they pass (or None: no masks). `spaces`: the label spaces the pass covers (None: one
    space, everything that passes). With either, the probe consumes one batch of images each time a
    vision tower starts (block 0) — and for an image-conditioned text tower (CoCoOp), each time its
    sequences of a batch of images start — so it must see every image exactly once and in order.
    """

    def __init__(self, foreground: "torch.Tensor | None" = None,
                 reference: "dict[int, tuple[Moments, Moments]] | None" = None,
                 spaces: LabelSpaces | None = None, image_conditioned: bool = False) -> None:
        self.blocks: dict[tuple[str, int], _Block] = {}
        self.layers: dict[str, int] = {}
        self.foreground = foreground
        self.spaces = spaces
        self.image_conditioned = image_conditioned
        if spaces is not None and foreground is not None and len(foreground) != len(spaces.images):
            raise ValueError(f"{len(foreground)} foreground masks for {len(spaces.images)} images")
        # Zero-shot CLIP's foreground share on these images is the same for every method and seed:
        # `reference` (block -> moments) is filled by the first probe and reused by the next ones.
        self.reference = reference if reference is not None else {}
        reused = foreground is not None and bool(self.reference)
        for k, moments in self.reference.items():
            self._entry("vision", k).fg["zsclip"] = moments
        self.reference_towers = frozenset({"vision"} if foreground is not None and not reused else ())
        self._cursor = {"vision": 0, REFERENCE: 0, "text": 0}
        self._batch: dict[str, tuple["torch.Tensor | None", "torch.Tensor | None"]] = {}

    def _entry(self, tower: str, k: int) -> _Block:
        return self.blocks.setdefault((tower, k), _Block())

    def _images(self, tower: str, n: int, what: str) -> slice:
        start = self._cursor[tower]
        total = len(self.spaces.images) if self.spaces is not None else len(self.foreground)
        if start + n > total:
            raise RuntimeError(f"the mechanism probe saw more images ({start + n}) than it has {what} for "
                               f"({total}): it must see each evaluated image once, in order")
        self._cursor[tower] = start + n
        return slice(start, start + n)

    def _inputs(self, tower: str, k: int, n: int, device: "torch.device"
                ) -> tuple["torch.Tensor | None", "torch.Tensor | None"]:
        """(label-space membership (n, S) or None, patch foreground (n, P) or None) of the n inputs
        of this block, read at block 0 and kept for the tower's later blocks."""
        if k == 0:
            groups = foreground = None
            base = tower.split("/")[0]
            if base == "vision" and (self.spaces is not None or self.foreground is not None):
                rows = self._images(tower, n, "masks" if self.spaces is None else "label spaces")
                if self.spaces is not None:
                    groups = self.spaces.images[rows]
                if self.foreground is not None:
                    foreground = self.foreground[rows].to(device)
            elif tower == "text" and self.spaces is not None:
                classes = self.spaces.classes
                if n % len(classes) or (not self.image_conditioned and n != len(classes)):
                    raise RuntimeError(f"the text tower passed {n} sequences for {len(classes)} classes")
                if self.image_conditioned:  # (image, class) sequences, image-major
                    images = self.spaces.images[self._images("text", n // len(classes), "label spaces")]
                    groups = (images.unsqueeze(1) & classes.unsqueeze(0)).reshape(n, -1)
                else:
                    groups = classes
            self._batch[tower] = (None if groups is None else groups.to(device), foreground)
        return self._batch.get(tower, (None, None))

    def __call__(self, tower: str, k: int, block: "nn.Module", x: "torch.Tensor", slots: "Slots",
                 biases: "tuple[torch.Tensor, torch.Tensor] | None") -> None:
        import torch

        from bmip.prompting import attention_terms, pooled_positions

        with torch.no_grad():
            base = tower.split("/")[0]
            rows = pooled_positions(base, x, slots)
            groups, foreground = self._inputs(tower, k, x.shape[0], x.device)
            if tower == REFERENCE:  # the unprompted tower: only its foreground share is kept
                if foreground is not None:
                    terms = attention_terms(block, x, slots, rows)
                    share = foreground_share(terms.weights, foreground, _first_patch(slots))
                    moments = self.reference.setdefault(k, self._entry("vision", k).fg["zsclip"])
                    moments[0].add(share, groups)
                    moments[1].add(share.mean(dim=1), groups)
                return
            self.layers[tower] = max(self.layers.get(tower, 0), k + 1)
            if biases is not None:
                self._bias(tower, k, block, x, slots, rows, biases, groups)
            if not slots.length:
                return
            terms = attention_terms(block, x, slots, rows)
            entry = self._entry(tower, k)
            entry.heads = terms.prompt_share.shape[1]
            lam = terms.prompt_share[:, :, 0]  # (B, H)
            entry.lam_head.add(lam, groups)
            entry.lam_all.add(lam.mean(dim=1), groups)
            prompt, rest = terms.prompt_term[:, :, 0], terms.reweighted[:, :, 0]  # (B, H, e)
            entry.ratio_head.add(prompt.norm(dim=-1) / rest.norm(dim=-1), groups)
            prompt_out = terms.output_space(terms.prompt_term)[:, 0]
            rest_out = terms.output_space(terms.reweighted)[:, 0]
            entry.ratio_all.add(prompt_out.norm(dim=-1) / rest_out.norm(dim=-1), groups)
            entry.stab_head.add(prompt, groups)
            entry.stab_all.add(prompt_out, groups)
            if foreground is not None and tower == "vision":
                share = foreground_share(terms.weights, foreground, _first_patch(slots))
                entry.fg["method"][0].add(share, groups)
                entry.fg["method"][1].add(share.mean(dim=1), groups)

    def _bias(self, tower: str, k: int, block: "nn.Module", x: "torch.Tensor", slots: "Slots",
              rows: "torch.Tensor", biases: "tuple[torch.Tensor, torch.Tensor]", groups: "torch.Tensor | None") -> None:
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
        entry.bias["after_attention"].add(after_attn.norm() / mid.norm(dim=-1), groups)
        entry.bias["after_mlp"].add(after_mlp.norm() / out.norm(dim=-1), groups)

    def _towers(self, space: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tower in TOWERS:
            ks = sorted(k for t, k in self.blocks if t == tower and self.blocks[(t, k)].summary_ready())
            out[tower] = ({"layers": self.layers[tower],
                           "blocks": {str(k): self.blocks[(tower, k)].summary(space) for k in ks}}
                          if ks else None)
        return out

    def summary(self) -> dict[str, Any]:
        """Per tower: {"layers", "blocks": {k: BLOCK}}, or None for a tower with nothing recorded;
        with `spaces`, that per label space ({name: towers}), after checking that the pass saw
        every image of them."""
        if self.spaces is None:
            return self._towers(0)
        n = len(self.spaces.images)
        for tower in ("vision", REFERENCE, "text"):
            seen = self._cursor[tower]
            if seen not in (0, n) or (tower == "text" and self.image_conditioned and seen != n):
                raise RuntimeError(f"the mechanism probe's {tower} tower saw {seen} of the {n} images of its "
                                   "label spaces: the pass must cover each image once")
        return {name: self._towers(s) for s, name in enumerate(self.spaces.names)}


@contextlib.contextmanager
def recording(model: Any, foreground: "torch.Tensor | None" = None,
              reference: "dict[int, tuple[Moments, Moments]] | None" = None,
              spaces: LabelSpaces | None = None) -> Iterator[dict[str, Any]]:
    """Attach a `MechanismProbe` to `model` (a PromptedCLIP) for the passes inside the block; the
    yielded dict is filled with the per-tower summary when the block exits (with `spaces`: one per
    label space, by name). The foreground share (and its zero-shot reference pass) only for methods
    with vision prompt positions; `reference`: zero-shot CLIP's foreground statistics for the same
    images (and spaces) from an earlier recording (filled when empty), so that the reference pass
    runs once per image set, not once per seed."""
    prompted = model.method.vision_tokens or model.method.inserted_tokens
    probe = MechanismProbe(foreground if prompted else None, reference, spaces,
                           model.method.image_conditioned)
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


def problems(doc: Any, identity: dict[str, Any], biased: dict[str, int] | None = None, first: int = 0) -> list[str]:
    """What is wrong with a mechanism document for the run `identity` (protocol, method, dataset,
    seed): its protocol's label spaces, in each at least one recorded tower, no vision tower for a
    method whose image tower is frozen (not prompted), every recorded prompt tower with every block
    0..layers-1 (bias tuning: `biased` gives each tower's depth, blocks 0..depth-1; tokens a method
    inserts at a later block, MMRL's: `first`, blocks first..layers-1), and each block entry
    complete and in range."""
    out, recorded = header_problems(doc, FORMAT, identity)
    masks = doc.get("masks") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and doc.get("format") == FORMAT and not isinstance(masks, bool):
        out.append("'masks' must be true or false (whether the dataset has object masks)")
    if recorded is None:
        return out
    from bmip.methods import frozen_image_tower, method_names

    frozen = method_of(str(identity.get("method"))) in method_names() and frozen_image_tower(identity["method"])
    for part, towers in sorted(recorded.items()):
        towers = towers if isinstance(towers, dict) else {}
        if not any(towers.get(t) for t in TOWERS):
            out.append(f"{part}: no tower recorded")
        if frozen and towers.get("vision"):
            out.append(f"{part}/vision: {identity['method']}'s image tower is not prompted (its evaluation reads the "
                       "frozen image features and runs no image forward); it records no vision tower")
        for tower in TOWERS:
            record = towers.get(tower)
            if not record:
                if biased and biased.get(tower):
                    out.append(f"{part}/{tower}: bias-tuned blocks 0..{biased[tower] - 1} not recorded")
                continue
            blocks, layers = record.get("blocks") or {}, record.get("layers")
            want = biased.get(tower, 0) if biased is not None else layers
            expected = [str(k) for k in range(first if biased is None else 0, want)] if isinstance(want, int) else None
            if expected is None or sorted(blocks, key=lambda k: (len(k), k)) != expected:
                out.append(f"{part}/{tower}: blocks {sorted(blocks, key=lambda k: (len(k), k))}, expected {expected} "
                           "(every block the prompts pass through; bias tuning: its depth; MMRL: from its first "
                           "representation layer)")
            for k, entry in sorted(blocks.items()):
                out += block_problems(f"{part}/{tower}/{k}", entry, bool(masks), tower)
    return out


def write_mechanism(path: Any, identity: dict[str, Any], masks: bool, parts: dict[str, Any]) -> None:
    """Write a mechanism document atomically."""
    from bmip.io import write_json

    write_json(path, {"format": FORMAT, **identity, "masks": masks, "parts": parts})
