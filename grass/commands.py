"""``grass train`` and ``grass config show``."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from grass.config import describe, load_config


def _train(args) -> int:
    from grass.distributed import init_distributed
    from grass.train import train

    cfg = load_config(args.config, args.overrides)
    # Under torchrun (WORLD_SIZE > 1) or a multi-task submitit job: one process per device, DDP or
    # FSDP by train.parallel.
    dist = init_distributed(cfg.train.device)
    if dist is not None and dist.rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # one copy of the log: rank 0's
    try:
        result = train(cfg, progress=not args.no_progress, dist=dist)
    finally:
        if dist is not None:
            dist.close()
    if dist is not None and dist.rank != 0:
        return 0  # rank 0 prints the summary
    keys = [k for k in sorted(result) if k.startswith(("acc/", "speed/", "mem/", "params/", "train/"))]
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    print(f"run directory: {result.get('run_dir')}")
    return 0


def _config_show(args) -> int:
    path, overrides = args.config, list(args.overrides)
    if path is not None and "=" in path and not Path(path).exists():  # `grass config show key=value`
        path, overrides = None, [path, *overrides]
    print(describe(load_config(path, overrides)))
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
