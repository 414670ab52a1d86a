"""``grass eval``: a model or a finished run on the paper's benchmarks (paper protocol, optionally lm-eval)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from grass.data.commands import text_table
from grass.errors import DataError, GrassError


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise GrassError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GrassError(f"device '{name}' requested but no CUDA device is available; use --device cpu")
    return dev


def load_eval_model(spec: str, dtype: str = "float32", tokenizer: str | None = None):
    """``(model, tokenizer, description)`` for a model name/folder or a finished run directory.

    A run directory (it holds ``config.yaml`` or ``result.json``) must hold the weights saved with
    ``train.save_model=full`` (or ``adapter``, loaded on top of the run's base model) in ``<run>/model``.
    ``tokenizer`` (an HF id or folder) replaces the model's own tokenizer.

    Raises:
        GrassError: a run without saved weights; ModelError for a model that does not load.
    """
    from grass.models.load import load_model

    p = Path(spec).expanduser()
    is_run = p.is_dir() and ((p / "config.yaml").is_file() or (p / "result.json").is_file())
    if not is_run:
        model, tok = load_model(spec, dtype=dtype, tokenizer=tokenizer)
        return model, tok, spec
    saved = p / "model"
    if not saved.is_dir():
        raise GrassError(f"run directory '{p}' has no saved model ({saved} is missing): train it with "
                         f"train.save_model=full to evaluate it later")
    if (saved / "adapter_config.json").is_file():
        import yaml
        from peft import PeftModel

        try:
            cfg = yaml.safe_load((p / "config.yaml").read_text()) if (p / "config.yaml").is_file() else {}
        except yaml.YAMLError as e:
            raise GrassError(f"'{p / 'config.yaml'}' is not readable YAML: {str(e).splitlines()[0]}") from None
        model_section = cfg.get("model") if isinstance(cfg, dict) else None
        base = model_section.get("name") if isinstance(model_section, dict) else None
        if not base:
            raise GrassError(f"'{saved}' holds an adapter but '{p / 'config.yaml'}' does not name the base model")
        model, tok = load_model(base, dtype=dtype, tokenizer=tokenizer or model_section.get("tokenizer"))
        model = PeftModel.from_pretrained(model, str(saved))
        return model, tok, f"{p} (adapter on {base})"
    if not (saved / "config.json").is_file():
        raise GrassError(f"'{saved}' holds no model (no config.json): retrain with train.save_model=full")
    model, tok = load_model(str(saved), dtype=dtype, tokenizer=tokenizer)
    return model, tok, str(p)


def _eval(args) -> int:
    from grass.data import check_benchmarks_available, resolve_benchmarks
    from grass.eval.lmeval import evaluate_lmeval
    from grass.eval.protocol import evaluate, generation_budgets
    from grass.models.checks import check_context

    names = resolve_benchmarks(args.benchmarks)
    if not names:
        raise DataError("--benchmarks is empty; give names or a group (commonsense, math, all)")
    if args.limit is not None and args.limit < 1:
        raise GrassError(f"--limit must be a positive number of items, not {args.limit}")
    if args.batch_size < 1:
        raise GrassError(f"--batch-size must be positive, not {args.batch_size}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise GrassError(f"--max-new-tokens must be positive, not {args.max_new_tokens}")
    check_benchmarks_available(names)
    device = _device(args.device)
    model, tok, what = load_eval_model(args.model, args.dtype, args.tokenizer)
    check_context(model.config, args.model, budgets=generation_budgets(names, args.max_new_tokens),
                  budget_field="--max-new-tokens")
    model.to(device)
    res = evaluate(model, tok, names, limit=args.limit, batch_size=args.batch_size,
                   max_new_tokens=args.max_new_tokens, device=device, progress=True)
    if args.lm_eval:
        res.update(evaluate_lmeval(model, tok, names, limit=args.limit, batch_size=args.batch_size, device=device,
                                   generate_arith=args.lm_eval_generate))
    rows = [[n, f"{res[f'acc/{n}']:.1f}", f"{res[f'eval/unparsed/{n}']:.1f}",
             f"{res[f'acc_lmeval/{n}']:.1f}" if f"acc_lmeval/{n}" in res else "-", str(res[f"eval/n/{n}"])]
            for n in names]
    rows.append(["avg", f"{res['acc/avg']:.1f}", "", f"{res['acc_lmeval/avg']:.1f}" if "acc_lmeval/avg" in res else "-",
                 ""])
    # unparsed: % of items whose generated answer held no extractable answer (scored wrong)
    table = text_table(rows, ["benchmark", "acc (paper protocol)", "unparsed %", "acc (lm-eval)", "items"])
    speed = f"{res['eval/examples_per_s']:.2f} examples/s (generation)"
    if "eval_lmeval/examples_per_s" in res:
        speed += f", {res['eval_lmeval/examples_per_s']:.2f} examples/s (lm-eval)"
    record = {"model": what, "limit": args.limit, **res}
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"{table}\n{speed}\nresults written to {args.out}")
    else:
        print(f"{table}\n{speed}", file=sys.stderr)  # stdout stays pure JSON for pipes
        print(json.dumps(record, indent=2))
    return 0


def add_commands(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a model or a finished run on the paper's benchmarks",
                       description="Evaluate with the paper's protocol (greedy generation + answer extraction) "
                                   "and optionally lm-eval. Example: grass eval --model smollm2-135m "
                                   "--benchmarks boolq,gsm8k --limit 50")
    e.add_argument("--model", required=True, help="model name (smollm2-135m, tiny-llama, HF id, folder) or a run dir")
    e.add_argument("--benchmarks", default="all", help="comma-separated names or groups (commonsense, math, all)")
    e.add_argument("--limit", type=int, help="the first N evaluation items of each benchmark")
    e.add_argument("--batch-size", type=int, default=16, help="generation / lm-eval batch size")
    e.add_argument("--max-new-tokens", type=int, help="generation budget (default 32 commonsense, 256 arithmetic)")
    e.add_argument("--lm-eval", action="store_true", help="also evaluate through lm-eval (log-likelihood)")
    e.add_argument("--lm-eval-generate", action="store_true",
                   help="with --lm-eval: also the numeric arithmetic sets, by lm-eval generation (slow)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    e.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    e.add_argument("--tokenizer", help="HF id or folder of the tokenizer (a model folder saved without its own)")
    e.add_argument("--out", help="write the JSON results here instead of stdout")
    e.set_defaults(func=_eval)
