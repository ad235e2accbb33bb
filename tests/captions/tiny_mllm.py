"""A tiny randomly initialised Qwen2-VL, saved as a model folder the mllm captioner loads with the
real `from_pretrained` code: no download (nothing here can fetch weights)."""
from __future__ import annotations

from pathlib import Path

WORDS = ("a photo of the small large shape on in at left right top bottom red blue green grey dark light "
         "background picture with and image describe this do not name its category . ,").split()
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make_tiny_mllm(folder: Path, seed: int = 0) -> Path:
    """Write a 2-layer Qwen2-VL (width 32) with a word-level tokenizer and its processor into `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

    vocab = {token: i for i, token in enumerate((*SPECIAL, "[UNK]", "user", "assistant", *WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="[UNK]", additional_special_tokens=list(SPECIAL[1:]))
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
                                 tokenizer=fast, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    ids = {name: vocab[token] for name, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                                                   ("vision_start_token_id", "<|vision_start|>"),
                                                   ("vision_end_token_id", "<|vision_end|>"))}
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
                     "bos_token_id": vocab["<|im_start|>"], "eos_token_id": vocab["<|im_end|>"], "pad_token_id": 0},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3},
        **ids)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)
