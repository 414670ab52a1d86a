"""Task accuracy with the paper's protocol (LLM-Adapters' evaluate.py / commonsense_evaluate.py):
batched greedy generation from the Alpaca prompt, then answer extraction.

- arithmetic (GSM8K, AddSub, MultiArith, SingleEq, SVAMP): the last number of the response,
  thousands separators and currency signs stripped, equal to the label within 1e-3;
- AQuA: the option letter ('the answer is (C)', else the last '(C)', else a leading 'C');
- commonsense: the first answer keyword of that benchmark in the response (``solution1``, ``true``,
  ``answer3``, ``option2``, ``ending4``), case-insensitive.

The response is the text generated after the prompt, up to EOS (and cut where the model starts a
new '### ' block of the template: a base model otherwise rambles into a made-up next task whose
numbers would be extracted). lm-eval's log-likelihood protocol lives in :mod:`grass.eval.lmeval`.
"""
from __future__ import annotations

import logging
import math
import re
import time

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from grass.data import load_benchmark, resolve_benchmarks
from grass.data.benchmarks import get_benchmark
from grass.data.format import render_prompt
from grass.data.templates import keywords_of
from grass.errors import ConfigError
from grass.models.checks import context_length

log = logging.getLogger(__name__)

DEFAULT_NEW_TOKENS = {"mc": 32, "arith": 256}  # used when max_new_tokens is None
ABS_TOL = 1e-3  # LLM-Adapters' MAX_DIFF
_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?")


def extract_number(text: str) -> float | None:
    """The last number in ``text`` ('1,234.5' -> 1234.5, '$12' -> 12, '-3' -> -3); None if none."""
    t = re.sub(r"(?<=\d),(?=\d)", "", text)  # thousands separators
    t = re.sub(r"[$€£¥]", "", t)
    nums = _NUMBER.findall(t)
    if not nums:
        return None
    try:
        return float(nums[-1])
    except ValueError:
        return None


def numbers_match(pred: float | None, gold: str | float) -> bool:
    """``pred`` equals the label within :data:`ABS_TOL` (so 12.0 matches '12')."""
    if pred is None:
        return False
    try:
        g = float(str(gold).replace(",", "").strip())
    except ValueError:
        return False
    return math.isclose(pred, g, rel_tol=1e-9, abs_tol=ABS_TOL)


def extract_letter(text: str, letters: str = "ABCDE") -> str | None:
    """AQuA's option letter: 'the answer is (C)' (last such phrase), else the last '(C)', else a
    response that starts with the letter ('C', 'C)', '(C) 12'); None otherwise."""
    cls = f"[{letters}]"
    hits = re.findall(rf"answer is\s*:?\s*\(?({cls})\)?(?![A-Za-z])", text, flags=re.IGNORECASE)
    if hits:
        return hits[-1].upper()
    hits = re.findall(rf"\(({cls})\)", text)
    if hits:
        return hits[-1]
    m = re.match(rf"\s*\(?({cls})(?:[).:]|\s*$)", text)
    return m.group(1) if m else None


def extract_keyword(text: str, keywords: list[str]) -> str | None:
    """The first of ``keywords`` that occurs (as a word) in ``text``, case-insensitive."""
    if not keywords:
        return None
    pattern = r"\b(" + "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True)) + r")\b"
    m = re.search(pattern, text.lower())
    return m.group(1) if m else None


def score(benchmark: str, response: str, example: dict) -> tuple[bool, object]:
    """Whether ``response`` answers ``example`` correctly, and the extracted prediction."""
    b = get_benchmark(benchmark)
    if b.answer_type == "number":
        pred = extract_number(response)
        return numbers_match(pred, example["answer"]), pred
    if b.answer_type == "letter":
        pred = extract_letter(response)
        return pred is not None and pred == str(example["answer"]).strip().upper(), pred
    pred = extract_keyword(response, keywords_of(example))
    return pred is not None and pred == str(example["answer"]).strip().lower(), pred


def generation_budgets(benchmarks: list[str], max_new_tokens: int | None) -> dict[str, int]:
    """Benchmark -> new tokens generated per item (``max_new_tokens``, else the default of its kind)."""
    return {n: max_new_tokens or DEFAULT_NEW_TOKENS[get_benchmark(n).kind] for n in resolve_benchmarks(benchmarks)}


NEXT_BLOCK = "### "  # where the template's next block starts: the response ends there


def _cut(text: str) -> str:
    i = text.find(NEXT_BLOCK)
    return text[:i] if i >= 0 else text


class StopAtNextBlock(StoppingCriteria):
    """Stops each row of a batch once its response holds :data:`NEXT_BLOCK`.

    Everything from the marker on is cut anyway (:func:`_cut`), so generating it only costs time: a
    batch used to run to its full budget whenever one row rambled into a made-up next task. A row
    that has not stopped yet can only complete the marker with its newest token, and the marker's
    four characters span at most four tokens (a few more if special tokens, decoded to nothing,
    sit between them), so decoding the row's last ``len(NEXT_BLOCK) + 4`` new tokens finds it
    exactly where :func:`_cut` finds it in the whole response, at the same cost at every step. (The
    decoders we ship keep prefixes: byte-level BPE, and SentencePiece without space clean-up;
    ``clean_up_tokenization_spaces`` could in principle merge across the marker.)
    """

    def __init__(self, tokenizer, prompt_width: int):
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.window = len(NEXT_BLOCK) + 4

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        start = max(self.prompt_width, input_ids.shape[1] - self.window)
        texts = self.tokenizer.batch_decode(input_ids[:, start:].cpu(), skip_special_tokens=True)
        return torch.tensor([NEXT_BLOCK in t for t in texts], dtype=torch.bool, device=input_ids.device)


def _prompt_ids(tokenizer, example: dict) -> list[int]:
    """Token ids of the prompt exactly as in training (:func:`grass.data.format.encode_example`)."""
    ids = tokenizer(render_prompt(example), add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", True):
        ids = [tokenizer.bos_token_id] + ids
    return ids


@torch.inference_mode()
def generate(model, tokenizer, examples: list[dict], *, batch_size: int, max_new_tokens: int, device,
             stop_at_next_block: bool = True) -> list[str]:
    """Greedy responses to the prompts of ``examples`` (left-padded batches, a row stops at EOS).

    Prompts are batched by length (fewer pad tokens); the returned list is in input order. With
    ``stop_at_next_block`` a row also stops where :func:`_cut` would cut it (:class:`StopAtNextBlock`):
    the same responses, sooner. ``False`` generates the full budget (to measure the difference:
    ``scripts/benchmark_generation.py``).
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [_prompt_ids(tokenizer, ex) for ex in examples]
    found = context_length(model.config) if hasattr(model, "config") else None
    if found and max_new_tokens >= found[1]:  # callers check first (grass.models.checks.check_context)
        raise ConfigError(f"a generation budget of {max_new_tokens} new tokens leaves no room for the prompt in the "
                          f"model's context ({found[0]}={found[1]}): lower eval.max_new_tokens")
    if found:  # a prompt that does not fit keeps its end (the question and the answer format)
        keep = found[1] - max_new_tokens
        n_long = sum(len(e) > keep for e in encoded)
        if n_long:
            log.warning("%d prompts are longer than %d tokens: their beginning is cut", n_long, keep)
            encoded = [e[-keep:] for e in encoded]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    out: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):  # left padding: every prompt ends at the last column
            ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]):] = 1
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, num_beams=1, use_cache=True, pad_token_id=pad_id,
                             eos_token_id=tokenizer.eos_token_id, temperature=None, top_p=None, top_k=None,
                             stopping_criteria=StoppingCriteriaList(
                                 [StopAtNextBlock(tokenizer, width)] if stop_at_next_block else []))
        for row, i in enumerate(idx):
            out[i] = _cut(tokenizer.decode(gen[row, width:], skip_special_tokens=True))
    return out


def _model_device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def evaluate(model, tokenizer, benchmarks: list[str], *, limit: int | None, batch_size: int,
             max_new_tokens: int | None, device=None, progress: bool = True,
             predictions: list | None = None) -> dict:
    """Accuracy of ``model`` on ``benchmarks`` with the paper's protocol.

    Args:
        model: a causal LM (PEFT-wrapped is fine); put in eval mode for the call, mode restored after.
        tokenizer: its tokenizer.
        benchmarks: benchmark names or groups (see ``grass data list``).
        limit: the first ``limit`` evaluation items of each benchmark (None: all).
        batch_size: prompts per generation batch.
        max_new_tokens: generation budget; None uses 32 (commonsense) / 256 (arithmetic).
        device: where inputs go (default: the model's device).
        progress: log one line per benchmark.
        predictions: if a list, one dict per item is appended (benchmark, prompt, response, pred, gold, correct).

    Returns:
        ``{"acc/<b>": percent, "acc/avg": mean of the percents, "eval/n/<b>": items,
        "eval/unparsed/<b>": percent of the items whose response held no extractable answer (no
        number, option letter or answer keyword: scored wrong, as in the paper),
        "eval/examples_per_s": float}``; ``{}`` for an empty benchmark list.

    Raises:
        DataError: unknown benchmark, missing source, empty split.
    """
    names = resolve_benchmarks(benchmarks)
    if not names:
        return {}
    device = device if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    results: dict = {}
    total, t0 = 0, time.perf_counter()
    try:
        for name in names:
            items = load_benchmark(name, "eval", limit=limit)
            budget = max_new_tokens or DEFAULT_NEW_TOKENS[get_benchmark(name).kind]
            t = time.perf_counter()
            responses = generate(model, tokenizer, items, batch_size=batch_size, max_new_tokens=budget, device=device)
            correct = unparsed = 0
            for ex, resp in zip(items, responses):
                ok, pred = score(name, resp, ex)
                correct += ok
                unparsed += pred is None
                if predictions is not None:
                    predictions.append({"benchmark": name, "instruction": ex["instruction"], "response": resp,
                                        "pred": pred, "gold": ex["answer"], "correct": bool(ok)})
            results[f"acc/{name}"] = 100.0 * correct / len(items)
            results[f"eval/n/{name}"] = len(items)
            # An accuracy below chance is often answers that do not parse, not wrong answers: say which.
            results[f"eval/unparsed/{name}"] = 100.0 * unparsed / len(items)
            total += len(items)
            if progress:
                log.info("eval %-10s acc %5.1f%% (unparsed %5.1f%%) on %d items (%.1f s)", name,
                         results[f"acc/{name}"], results[f"eval/unparsed/{name}"], len(items),
                         time.perf_counter() - t)
    finally:
        model.train(was_training)
    accs = [results[f"acc/{n}"] for n in names]
    results["acc/avg"] = sum(accs) / len(accs)
    results["eval/examples_per_s"] = total / max(time.perf_counter() - t0, 1e-9)
    return results
