"""Checks run before training starts: benchmark names, sources, empty splits, and contamination
(an evaluation item whose normalized instruction text is also a training example). A problem is a
:class:`DataError`; nothing is dropped silently.
"""
from __future__ import annotations

import logging

from grass.data.arithmetic import example_key
from grass.data.benchmarks import availability, load_benchmark, resolve_benchmarks
from grass.errors import DataError

log = logging.getLogger(__name__)


def find_contamination(train_examples: list[dict], eval_items: list[dict]) -> list[dict]:
    """The evaluation items whose normalized instruction (+ input) appears among the training examples."""
    keys = {example_key(x) for x in train_examples}
    return [x for x in eval_items if example_key(x) in keys]


def check_contamination(train_examples: list[dict], benchmarks: list[str], where: str = "the training data") -> None:
    """Raise DataError if any evaluation item of ``benchmarks`` is in ``train_examples``."""
    keys = {example_key(x) for x in train_examples}
    for name in benchmarks:
        items = load_benchmark(name, "eval")
        hits = [x for x in items if example_key(x) in keys]
        if hits:
            first = hits[0]["instruction"].strip().replace("\n", " ")[:80]
            raise DataError(f"{len(hits)} of the {len(items)} evaluation items of '{name}' appear in {where} "
                            f"(e.g. '{first}...'): remove them from the training data or do not evaluate '{name}'")


def check_benchmarks_available(benchmarks: list[str]) -> None:
    """Raise DataError naming the package to install or the variable to set for a missing source."""
    for name in benchmarks:
        ok, reason = availability(name)
        if not ok:
            raise DataError(f"benchmark '{name}' is not available here: {reason}")


def check_run_data(cfg) -> None:
    """Validate a run's data before training: benchmark names (``cfg.eval.benchmarks``), their
    sources, non-empty splits, the training data (``cfg.data.train``) and contamination.

    Raises:
        DataError: with a message that says what to change.
    """
    from grass.data import load_train_examples  # late: grass.data imports this module

    benchmarks = resolve_benchmarks(list(cfg.eval.benchmarks or []))
    check_benchmarks_available(benchmarks)
    train = load_train_examples(cfg.data)
    if not train:
        raise DataError(f"the training data '{cfg.data.train}' holds no examples")
    where = f"the training data ('{cfg.data.train}')" if cfg.data.train else "the default training data"
    check_contamination(train, benchmarks, where)
    log.info("data check passed: %d training examples, no overlap with %s", len(train),
             ", ".join(benchmarks) or "(no benchmarks)")
