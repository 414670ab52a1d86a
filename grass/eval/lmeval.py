"""The lm-eval bridge: the model in memory, evaluated by lm-eval's ``HFLM`` on task files that are
generated from the local data, so nothing is ever fetched from a hub.

For each benchmark we write ``<tmp>/<task>.jsonl`` (one document per evaluation item, the same
items and order as the paper's protocol) and ``<tmp>/<task>.yaml`` (``dataset_path: json`` with
``data_files``), and load them through ``TaskManager(include_path=<tmp>, include_defaults=False)``.
Prompts follow lm-eval's own task configs (zero-shot):

- multiple choice by log-likelihood of each option text (``acc`` and length-normalized ``acc_norm``):
  BoolQ ('<passage>\\nQuestion: <q>?\\nAnswer:' -> no/yes), PIQA, ARC ('Question: <q>\\nAnswer:'),
  SIQA ('Q: <context> <question>\\nA:'), OBQA (question stem), HellaSwag (cleaned context -> ending),
  WinoGrande (partial scoring: the sentence up to the blank filled with each option, scored on the
  rest), AQuA (the question, the five option texts parsed from 'Answer Choices: (A) ...');
- the five numeric arithmetic sets have no options: they are skipped (logged) unless
  ``generate_arith=True``, which runs lm-eval's GSM8K-style zero-shot generation ('Question: <q>\\nAnswer:',
  stop at a blank line, last number by the 'flexible-extract' filter, exact match after removing
  ',', '$' and a final '.'); that is slow on a CPU.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import yaml

from grass.data import load_benchmark, resolve_benchmarks
from grass.errors import DataError

log = logging.getLogger(__name__)

NUMERIC = ("gsm8k", "addsub", "multiarith", "singleeq", "svamp")


def _aqua_doc(ex: dict) -> dict:
    q, sep, opts = ex["instruction"].partition("Answer Choices:")
    parts = re.split(r"\(([A-E])\)", opts)  # ['', 'A', ' 23.65 ', 'B', ...]
    letters, texts = parts[1::2], [t.strip() for t in parts[2::2]]
    if not sep or not letters or ex["answer"] not in letters:
        raise DataError(f"cannot parse the options of AQuA item '{ex['instruction'][:60]}...'")
    return {"query": f"Question: {q.strip()}\nAnswer:", "choices": texts, "gold": letters.index(ex["answer"])}


def lm_doc(name: str, ex: dict) -> dict:
    """The lm-eval document of one evaluation item (see the module docstring for the formats)."""
    m = ex.get("meta", {})
    if name == "boolq":
        return {"query": f"{m['passage']}\nQuestion: {m['question']}?\nAnswer:", "choices": ["no", "yes"],
                "gold": 1 if ex["answer"] == "true" else 0}
    if name == "piqa":
        return {"query": f"Question: {m['goal']}\nAnswer:", "choices": ex["choices"], "gold": ex["gold"]}
    if name == "siqa":
        return {"query": f"Q: {m['context']} {m['question']}\nA:", "choices": ex["choices"], "gold": ex["gold"]}
    if name == "hellaswag":
        return {"query": m["context"], "choices": ex["choices"], "gold": ex["gold"]}
    if name == "winogrande":
        s = m["sentence"]
        i = s.index("_")
        return {"query": "", "choices": [s[:i] + o for o in ex["choices"]], "target": s[i + 1:].strip(),
                "gold": ex["gold"]}
    if name in ("arc_e", "arc_c"):
        return {"query": f"Question: {m['question']}\nAnswer:", "choices": ex["choices"], "gold": ex["gold"]}
    if name == "obqa":
        return {"query": m["question"], "choices": ex["choices"], "gold": ex["gold"]}
    if name == "aqua":
        return _aqua_doc(ex)
    target = f"{float(ex['answer']):g}" if re.fullmatch(r"-?\d+(\.\d+)?", ex["answer"]) else ex["answer"]
    return {"question": ex["instruction"].strip(), "answer": target}


def task_config(name: str, data_file: Path, cache_dir: Path, max_gen_toks: int) -> dict:
    """The lm-eval YAML config (as a dict) of one benchmark."""
    cfg = {"task": f"grass_{name}", "dataset_path": "json", "dataset_name": None,
           "dataset_kwargs": {"data_files": {"test": str(data_file)}, "cache_dir": str(cache_dir)},
           "test_split": "test", "metadata": {"version": 1.0}}
    if name in NUMERIC:
        cfg.update(output_type="generate_until", doc_to_text="Question: {{question}}\nAnswer:",
                   doc_to_target="{{answer}}",
                   generation_kwargs={"until": ["Question:", "\n\n"], "do_sample": False, "max_gen_toks": max_gen_toks},
                   filter_list=[{"name": "flexible-extract", "filter": [
                       {"function": "regex", "group_select": -1, "regex_pattern": r"(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                       {"function": "take_first"}]}],
                   metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                                 "ignore_case": True, "regexes_to_ignore": [",", "\\$", "\\.$"]}])
        return cfg
    metrics = [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")]
    cfg.update(output_type="multiple_choice", doc_to_choice="choices", metric_list=metrics)
    if name == "winogrande":  # doc_to_text gives an int: lm-eval scores the target after each context
        cfg.update(doc_to_text="gold", doc_to_target="target")
    else:
        cfg.update(doc_to_text="query", doc_to_target="gold")
    return cfg


def evaluate_lmeval(model, tokenizer, benchmarks: list[str], *, limit: int | None, batch_size: int, device=None,
                    generate_arith: bool = False, max_gen_toks: int = 256) -> dict:
    """Accuracy through lm-eval (``HFLM(pretrained=<model object>, tokenizer=tokenizer)``).

    Args:
        model, tokenizer: the model in memory (PEFT-wrapped is fine); eval mode during the call.
        benchmarks: names or groups; numeric arithmetic sets are skipped unless ``generate_arith``.
        limit: the first ``limit`` items of each benchmark (the same items as :func:`grass.eval.protocol.evaluate`).
        batch_size: lm-eval batch size.
        device: unused (HFLM uses the model's device); kept for a uniform signature.
        generate_arith: evaluate GSM8K/AddSub/... by generation (lm-eval's GSM8K recipe).
        max_gen_toks: generation budget for ``generate_arith``.

    Returns:
        ``{"acc_lmeval/<b>": percent, "acc_norm_lmeval/<b>": percent (multiple choice),
        "eval_lmeval/unparsed/<b>": percent of items whose generation held no number (generated
        arithmetic only: log-likelihood multiple choice always picks an option, so it has none),
        "acc_lmeval/avg": mean over the evaluated benchmarks, "eval_lmeval/examples_per_s": float}``.

    Raises:
        DataError: unknown benchmark or missing data; GrassError if lm-eval is not installed.
    """
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        from grass.errors import GrassError

        raise GrassError("the lm-eval bridge needs lm-eval: pip install 'grass-suite[eval]' (lm-eval==0.4.13)") from None
    names = [n for n in resolve_benchmarks(benchmarks) if generate_arith or n not in NUMERIC]
    skipped = [n for n in resolve_benchmarks(benchmarks) if n not in names]
    if skipped:
        log.info("lm-eval: skipping %s (no answer options; pass generate_arith=True to generate)", ", ".join(skipped))
    if not names:
        return {}
    env = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    os.environ.update({k: "1" for k in env})
    pad_token, padding_side = tokenizer.pad_token, tokenizer.padding_side
    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory(prefix="grass-lmeval-") as tmp:
            tmpdir, n_items = Path(tmp), 0
            for name in names:
                items = load_benchmark(name, "eval", limit=limit)
                n_items += len(items)
                data_file = tmpdir / f"grass_{name}.jsonl"
                data_file.write_text("".join(json.dumps(lm_doc(name, ex)) + "\n" for ex in items), encoding="utf-8")
                cfg = task_config(name, data_file, tmpdir / "hf_cache", max_gen_toks)
                (tmpdir / f"grass_{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
            tm = TaskManager(include_path=str(tmpdir), include_defaults=False)
            t0 = time.perf_counter()
            generated = [n for n in names if n in NUMERIC]  # the samples tell which answers did not parse
            out = simple_evaluate(model=lm, tasks=[f"grass_{n}" for n in names], task_manager=tm, limit=None,
                                  num_fewshot=0, log_samples=bool(generated), bootstrap_iters=0, verbosity="WARNING")
            elapsed = time.perf_counter() - t0
    finally:
        model.train(was_training)
        tokenizer.pad_token, tokenizer.padding_side = pad_token, padding_side
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    results: dict = {}
    for name in names:
        r = out["results"][f"grass_{name}"]
        if name in NUMERIC:
            results[f"acc_lmeval/{name}"] = 100.0 * r["exact_match,flexible-extract"]
            samples = out["samples"][f"grass_{name}"]
            # the regex filter's fallback when the generation holds no number
            invalid = sum(s["filtered_resps"][0] == "[invalid]" for s in samples)
            results[f"eval_lmeval/unparsed/{name}"] = 100.0 * invalid / max(1, len(samples))
        else:
            results[f"acc_lmeval/{name}"] = 100.0 * r["acc,none"]
            if "acc_norm,none" in r:
                results[f"acc_norm_lmeval/{name}"] = 100.0 * r["acc_norm,none"]
    accs = [results[f"acc_lmeval/{n}"] for n in names]
    results["acc_lmeval/avg"] = sum(accs) / len(accs)
    results["eval_lmeval/examples_per_s"] = n_items / max(elapsed, 1e-9)
    return results
