"""``grass data list`` and ``grass data download llm-adapters``."""
from __future__ import annotations

import logging

from grass.errors import DataError

log = logging.getLogger(__name__)


def text_table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns under a header and a rule of dashes (the commands' plain-text tables)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _data_list(args) -> int:
    from grass.data import BENCHMARKS, MIXTURES, availability

    rows = []
    for b in BENCHMARKS.values():
        ok, reason = availability(b.name)
        rows.append([b.name, b.kind, b.source, str(b.train_size), str(b.eval_size), b.eval_split,
                     ("yes" if ok else "no") + f" ({reason})"])
    print(text_table(rows, ["benchmark", "kind", "source", "train", "eval", "evaluation split", "available here"]))
    print("\ntraining mixtures (data.train=<name>): " + "; ".join(f"{k}: {v}" for k, v in MIXTURES.items()))
    print("groups for --benchmarks / eval.benchmarks: commonsense, math, all")
    return 0


def _data_download(args) -> int:
    from grass.data.download import download_llm_adapters
    from grass.data.sources import DATA_DIR_ENV

    if args.dataset != "llm-adapters":
        raise DataError(f"unknown data set '{args.dataset}'; valid: llm-adapters")
    dest = args.dest or "data/llm-adapters"
    out = download_llm_adapters(dest, ref=args.ref, timeout=args.timeout)
    print(f"downloaded the LLM-Adapters data to {out}\nuse it with: export {DATA_DIR_ENV}={out.resolve()}")
    return 0


def add_commands(sub) -> None:
    d = sub.add_parser("data", help="list the benchmarks and download the LLM-Adapters data")
    dsub = d.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="every benchmark: source, sizes, whether it is available here")
    ls.set_defaults(func=_data_list)
    dl = dsub.add_parser("download", help="fetch a data set (llm-adapters) from GitHub")
    dl.add_argument("dataset", help="llm-adapters")
    dl.add_argument("--dest", help="destination folder (default ./data/llm-adapters)")
    dl.add_argument("--ref", default="main", help="branch, tag or commit of AGI-Edgerunners/LLM-Adapters")
    dl.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    dl.set_defaults(func=_data_download)
