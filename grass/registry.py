"""Method registry: method name -> ``"module:Class"``, imported lazily.

Lazy lookup keeps ``grass`` free of import-time dependencies on ``baselines`` (no cycles) and
keeps ``grass --help`` fast. To add a method, add one line here and one folder (see README).
"""
from __future__ import annotations

import importlib

from grass.errors import ConfigError

METHODS: dict[str, str] = {
    "full": "baselines.full.method:FullFinetune",
    "lora": "baselines.lora.method:LoRA",
    "dora": "baselines.lora.method:DoRA",
    "lisa": "baselines.lisa.method:LISA",
    "grass": "grass.method.grass:GRASS",
    "badam": "baselines.badam.method:BAdam",
}


def method_names() -> list[str]:
    """Registered method names, in registry order."""
    return list(METHODS)


def get_method(name: str) -> type:
    """The method class registered under ``name``.

    Raises:
        ConfigError: ``name`` is not registered (the message lists the valid names).
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; valid methods: {', '.join(METHODS)}")
    module, attr = METHODS[name].split(":")
    return getattr(importlib.import_module(module), attr)
