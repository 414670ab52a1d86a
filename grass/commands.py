"""``grass train`` and ``grass config show``."""
from __future__ import annotations

import json

from grass.config import describe, load_config


def _train(args) -> int:
    from grass.train import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg, progress=not args.no_progress)
    keys = [k for k in sorted(result) if k.startswith(("acc/", "speed/", "mem/", "params/", "train/"))]
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    print(f"run directory: {result.get('run_dir')}")
    return 0


def _config_show(args) -> int:
    print(describe(load_config(args.config, args.overrides)))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="fine-tune one model with one method; writes a run directory",
                       description="Fine-tune a model. Example: grass train model.name=tiny-llama method.name=grass "
                                   "train.max_steps=50")
    p.add_argument("--config", "-c", help="YAML file with config deltas")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=3e-4")
    p.set_defaults(func=_train)

    c = sub.add_parser("config", help="show the resolved config with each field's help")
    csub = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = csub.add_parser("show", help="print the resolved config")
    s.add_argument("config", nargs="?", help="YAML file with config deltas")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=_config_show)
