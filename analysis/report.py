"""One self-contained HTML report: every table, every figure (base64 PNG) and every run's config.

Nothing in the file refers to another file, so it can be mailed or attached to an issue as is.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis.collect import Collection
from analysis.plots import FIGURES
from analysis.plots_style import png_bytes
from analysis.table_format import Table, to_html
from analysis.tables import kind
from grass.results import CONFIG

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}caption{font-weight:bold;text-align:left;padding:4px 0}
th,td{border-bottom:1px solid #ddd;padding:3px 8px}th{border-bottom:2px solid #444}.r{text-align:right}.l{text-align:left}
p.note{font-size:13px;color:#555;margin:2px 0}figure{margin:1.5em 0}img{max-width:100%}
figcaption{font-size:13px;color:#555}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}
"""


def _runs_table(coll: Collection) -> Table:
    """Every run found, included or not, with its state and provenance."""
    rows = []
    for _, r in coll.frame.iterrows():
        acc = r.get("acc/avg")
        sha = r.get("provenance.git_sha")
        rows.append([str(r["run_id"]), str(r["method"]), str(r["model"]), str(r["task"]), str(r["seed"]),
                     str(r["state"]), "yes" if r["included"] else "no",
                     f"{acc:.2f}" if pd.notna(acc) else "–", str(sha)[:10] if isinstance(sha, str) else "–"])
    return Table("runs", f"Runs of {coll.experiment}",
                 ["Run", "Method", "Model", "Task", "Seed", "State", "In tables", "Avg acc (%)", "Git sha"],
                 rows, "lllllllrl")


def _configs(coll: Collection) -> str:
    parts = []
    for _, r in coll.frame.iterrows():
        path = Path(r["run_dir"]) / CONFIG
        text = path.read_text() if path.is_file() else "(no config.yaml)"
        parts.append(f"<details><summary>{html.escape(str(r['run_id']))} ({html.escape(str(r['method']))}, "
                     f"seed {html.escape(str(r['seed']))}, {html.escape(str(r['state']))})</summary>"
                     f"<pre>{html.escape(text)}</pre></details>")
    return "\n".join(parts)


def build_report(coll: Collection, tables: list[Table], figures: dict[str, Figure]) -> str:
    """The report's HTML text.

    Args:
        coll: the experiment's runs.
        tables: from :func:`analysis.tables.build_tables`.
        figures: from :func:`analysis.plots.make_figures`.
    """
    title = f"GRASS analysis: {coll.experiment}"
    n_in = int(coll.frame["included"].sum())
    footnote = coll.footnote()
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{n_in} of {len(coll.frame)} runs under <code>{html.escape(str(coll.runs_dir / coll.experiment))}"
            f"</code>; generated {dt.datetime.now().isoformat(timespec='seconds')} by "
            f"<code>grass report {html.escape(coll.experiment)}"
            f"{' --include-unfinished' if coll.include_unfinished else ''}</code>.</p>"]
    if footnote:
        body.append(f'<p class="note">{html.escape(footnote)}</p>')
    body.append("<h2>Tables</h2>")
    if not any(kind(t) == "accuracy" for t in tables):
        body.append("<p>No accuracy table: no run recorded <code>acc/&lt;benchmark&gt;</code> "
                    "(evaluate with <code>eval.benchmarks=[...]</code>).</p>")
    body += [to_html(t) for t in tables]
    body.append("<h2>Figures</h2>")
    if not figures:
        body.append("<p>No figure: the runs hold no data to plot.</p>")
    for name, fig in figures.items():
        data = base64.b64encode(png_bytes(fig)).decode()
        body.append(f'<figure id="fig-{name}"><img alt="{name}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(FIGURES.get(name, name))}</figcaption></figure>")
    body += ["<h2>Runs</h2>", to_html(_runs_table(coll)), "<h2>Configurations</h2>",
             "<p>The resolved <code>config.yaml</code> of every run.</p>", _configs(coll)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(coll: Collection, tables: list[Table], figures: dict[str, Figure], out_dir: str | Path) -> Path:
    """Write ``<out_dir>/report.html`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(build_report(coll, tables, figures))
    return path
