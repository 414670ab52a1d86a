"""Models: loading weights and tokenizers (:mod:`~grass.models.load`), and resolving a model name to
its config without weights (:mod:`~grass.models.configs`: tiny test configs, the typed-in
:mod:`~grass.models.presets`, local folders, HF ids)."""
