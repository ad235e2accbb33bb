"""The `mllm` captioner: a Hugging Face `transformers` image-text-to-text model describes each image.

The default model is **Qwen2-VL-2B-Instruct** (`Qwen/Qwen2-VL-2B-Instruct`, Apache-2.0): an
instruction-tuned vision-language model whose 2.2B parameters take ~4.5 GB in bf16, so one GPU of
any lab (a 16 GB card included) runs it with room for a batch; `transformers` supports it natively
(`AutoModelForImageTextToText`, no remote code); it follows a "do not name the object" instruction
well for its size and writes fluent, detailed one-sentence descriptions. Smaller models
(SmolVLM-256M/500M) caption faster but describe less and name the category more often against the
instruction; 7B-class models describe better but need ~16 GB and three times the time for 300k
images. Any other image-text-to-text model with a chat template is a `captions.model` away.

The instruction (`DEFAULT_INSTRUCTION`) asks for what is visible without the object's category:
a caption that names the class puts the label into the text a method reads for each test image,
which lifts the novel-class score without any prompt learning (the label leaks through the
caption, not through the model). Decoding is greedy (no sampling, one beam) with a fixed
`max_new_tokens`, so the captions are a function of the image, the model, the instruction and the
numerics: bf16 on a GPU, fp32 on a CPU. Batches are padded on the left and built in path order.

Loading is the real one: `AutoProcessor` and `AutoModelForImageTextToText.from_pretrained(model,
revision=...)`; a hub id is read from the local Hugging Face cache (the workflow sets
HF_HUB_OFFLINE=1: fetch the weights once beforehand, docs/captions.md). Pin `captions.revision` to
a commit: the provenance records the revision asked for and the commit that was loaded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from bmip.captions.captioners import ImageRef, code_sha256, library_versions
from bmip.captions.store import CaptionsError
from bmip.data import Dataset

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
DEFAULT_INSTRUCTION = (
    "Describe this image in one sentence: the colours, textures, shapes and parts you see, the background, "
    "the setting and the lighting. Do not say what kind of object, animal, plant, food, vehicle, place or "
    "action it shows, and do not name or guess its category."
)
LIBRARIES = ("torch", "transformers", "tokenizers", "pillow")


class MllmCaptioner:
    """Captions images with an image-text-to-text model (module docstring)."""

    name = "mllm"

    def __init__(self, settings: dict[str, Any], config: dict[str, Any], data: Dataset) -> None:
        import torch

        from bmip.engine.runtime import resolve_device

        self.model_id = settings.get("model") or DEFAULT_MODEL
        self.revision = settings.get("revision") or "main"
        self.instruction = settings.get("instruction") or DEFAULT_INSTRUCTION
        self.max_new_tokens = int(settings["max_new_tokens"])
        self.batch_size = int(settings["batch_size"])
        self.processor_options = dict(settings.get("processor") or {})
        self.device = resolve_device(config["device"])
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.commit: str | None = None
        self._model = None
        self._processor = None

    def provenance(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_id,
            "revision": self.revision,
            "commit": self.commit,
            "instruction": self.instruction,
            "generation": {"do_sample": False, "num_beams": 1, "max_new_tokens": self.max_new_tokens,
                           "batch_size": self.batch_size, "padding_side": "left",
                           "dtype": str(self.dtype).removeprefix("torch."), "device": self.device.type,
                           "processor": self.processor_options},
            "libraries": library_versions(LIBRARIES),
            "code_sha256": code_sha256(__name__),
        }

    def load(self) -> None:
        """The processor and the model, once: from a local folder, or a hub id at `revision`."""
        if self._model is not None:
            return
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError:
            raise CaptionsError("captions.captioner mllm needs the `transformers` package: "
                                "pip install 'bmip[captions]' (or the pins in requirements.lock)") from None
        where = {} if Path(self.model_id).is_dir() else {"revision": self.revision}
        log.info("loading %s%s on %s (%s)", self.model_id, f" at {self.revision}" if where else "", self.device,
                 self.dtype)
        try:
            processor = AutoProcessor.from_pretrained(self.model_id, **where, **self.processor_options)
            model = AutoModelForImageTextToText.from_pretrained(self.model_id, **where, dtype=self.dtype)
        except OSError as err:
            raise CaptionsError(
                f"captions.model {self.model_id} (revision {self.revision}) cannot be loaded here ({err}). Jobs read "
                "weights offline: fetch them once where there is network, e.g. `HF_HUB_OFFLINE=0 python -c \"from "
                f"huggingface_hub import snapshot_download; snapshot_download('{self.model_id}', "
                f"revision='{self.revision}')\"`, or name a local folder") from None
        processor.tokenizer.padding_side = "left"
        self.commit = getattr(model.config, "_commit_hash", None)
        self._model, self._processor = model.to(self.device).eval(), processor

    def caption(self, images: Sequence[ImageRef]) -> list[str]:
        import torch
        from PIL import Image

        self.load()
        processor, model = self._processor, self._model
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.instruction}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        out: list[str] = []
        batches = range(0, len(images), self.batch_size)
        for start in tqdm(batches, desc="captions", unit="batch", disable=len(batches) < 5):
            batch = images[start:start + self.batch_size]
            pictures = []
            for image in batch:
                with Image.open(image.file) as img:
                    pictures.append(img.convert("RGB"))
            inputs = processor(text=[prompt] * len(batch), images=pictures, padding=True, return_tensors="pt")
            inputs = inputs.to(self.device)
            for key, value in inputs.items():  # pixel values in the model's dtype
                if torch.is_tensor(value) and value.is_floating_point():
                    inputs[key] = value.to(self.dtype)
            with torch.inference_mode():
                generated = model.generate(**inputs, do_sample=False, num_beams=1,
                                           max_new_tokens=self.max_new_tokens)
            new = generated[:, inputs["input_ids"].shape[1]:]
            out += [" ".join(text.split()) for text in processor.batch_decode(new, skip_special_tokens=True)]
        return out
