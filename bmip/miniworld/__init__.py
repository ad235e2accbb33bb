"""miniworld: a procedurally generated image–text world and a tiny CLIP pretrained on it.

It lets the whole pipeline (few-shot prompt learning, base-to-novel, cross-dataset and domain
generalisation) run in minutes on a laptop CPU, without downloading CLIP weights or datasets.
Modules: ``world`` (attributes, class names, captions), ``render`` (numpy rendering styles),
``datasets`` (writing the mini-datasets), ``pretrain`` (contrastive pretraining), ``figure``
(sample-image figure), ``cli`` (subcommands).
"""
