"""Zero-shot CLIP: nothing learnable; the dataset's hand-written template (CoOp's CUSTOM_TEMPLATES)."""
from __future__ import annotations

from dataclasses import dataclass

from bmip.methods.base import PromptMethod


@dataclass
class ZSCLIPConfig:
    template: str | None = None  # overrides the dataset's template, e.g. "a photo of a {}."


class ZeroShotCLIP(PromptMethod):
    name = "zsclip"
    Config = ZSCLIPConfig

    def prompt_template(self, dataset_template: str) -> str:
        return self.config.template or dataset_template
