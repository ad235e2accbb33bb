"""bmip: prompt learning for open_clip ViT CLIP models (BMIP and its baselines)."""

__version__ = "0.1.0"
