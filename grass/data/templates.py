"""The Commonsense170K instruction templates of LLM-Adapters (Hu et al. 2023), applied to raw
records of the eight commonsense benchmarks.

Every ``render_*`` function maps one raw record (the field names of the HF dataset) to the
normalized schema ``{instruction, input, output, answer, choices, gold, meta}``: ``choices`` are
the option texts, ``gold`` the index of the right one, ``answer`` its keyword (``solution1``,
``true``, ``answer3``, ...) and ``output`` is ``"the correct answer is <keyword>"`` as in
Commonsense170K. ``meta`` keeps the raw fields that the lm-eval bridge needs (BoolQ's passage,
WinoGrande's sentence). The spacing reproduces LLM-Adapters' ``dataset/*/test.json`` files exactly
(tests/unit/data/test_templates.py checks it item by item).
"""
from __future__ import annotations

import re

OUTPUT = "the correct answer is {}"


def _example(instruction: str, keywords: list[str], gold: int, choices: list[str], meta: dict | None = None) -> dict:
    return {"instruction": instruction + "\n\nAnswer format: " + "/".join(keywords), "input": "",
            "output": OUTPUT.format(keywords[gold]), "answer": keywords[gold], "choices": list(choices),
            "gold": int(gold), "meta": meta or {}}


def render_boolq(question: str, answer: bool, passage: str = "") -> dict:
    """BoolQ: the question only (no passage), keywords true/false."""
    q = question.strip().rstrip("?")
    inst = f"Please answer the following question with true or false, question: {q}?"
    return _example(inst, ["true", "false"], 0 if answer else 1, ["true", "false"],
                    {"question": q, "passage": passage})


def render_piqa(goal: str, sol1: str, sol2: str, label: int) -> dict:
    inst = f"Please choose the correct solution to the question: {goal}\n\nSolution1: {sol1}\n\nSolution2: {sol2}"
    return _example(inst, ["solution1", "solution2"], int(label), [sol1, sol2], {"goal": goal})


def render_siqa(context: str, question: str, answers: list[str], label: int) -> dict:
    """SIQA; ``label`` is the 0-based index (the HF field is the string '1'..'3')."""
    opts = " ".join(f"Answer{i + 1}: {a}" for i, a in enumerate(answers))
    inst = f"Please choose the correct answer to the question: {context} {question}\n\n{opts}"
    return _example(inst, [f"answer{i + 1}" for i in range(len(answers))], label, answers,
                    {"context": context, "question": question})


def render_winogrande(sentence: str, option1: str, option2: str, label: int) -> dict:
    """WinoGrande; its template has no blank line before 'Answer format' (LLM-Adapters' spacing)."""
    inst = (f"Please choose the correct answer to fill in the blank to complete the given sentence: {sentence}"
            f"\n\nOption1: {option1} Option2: {option2} Answer format: option1/option2")
    ex = _example("", ["option1", "option2"], label, [option1, option2], {"sentence": sentence})
    ex["instruction"] = inst
    return ex


def render_qa(question: str, choices: list[str], label: int) -> dict:
    """ARC-Easy, ARC-Challenge and OpenBookQA (3 to 5 options)."""
    opts = " ".join(f"Answer{i + 1}: {c}" for i, c in enumerate(choices))
    inst = f"Please choose the correct answer to the question: {question}\n\n{opts}"
    return _example(inst, [f"answer{i + 1}" for i in range(len(choices))], label, choices, {"question": question})


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag clean-up (WikiHow bracket artifacts); the pip-shipped train split is
    only available in this form, so the evaluation split gets it too (same distribution)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def render_hellaswag(context: str, endings: list[str], label: int) -> dict:
    """HellaSwag; ``context`` is ``'<activity_label>: <ctx>'`` (already preprocessed)."""
    opts = " ".join(f"Ending{i + 1}: {e}" for i, e in enumerate(endings))
    inst = f"Please choose the correct ending to complete the given sentence: {context}\n\n{opts}"
    return _example(inst, [f"ending{i + 1}" for i in range(len(endings))], label, endings, {"context": context})


def keywords_of(example: dict) -> list[str]:
    """The answer keywords a commonsense example accepts (parsed from its 'Answer format' line)."""
    m = re.search(r"Answer format: (\S+)\s*$", example["instruction"])
    return m.group(1).split("/") if m else []
