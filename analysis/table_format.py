"""A small table model and its three renderings: markdown, LaTeX (booktabs) and HTML.

Tables are built once as :class:`Table` (cells carry their emphasis) so that the markdown, the
LaTeX and the HTML report always show the same numbers and the same best/second marks.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

MISSING = "–"


@dataclass
class Cell:
    """A table cell: its text and an optional emphasis, ``"best"`` (bold) or ``"second"`` (underlined)."""

    text: str
    style: str | None = None


@dataclass
class Table:
    """A rendered-agnostic table.

    Attributes:
        name: file stem (``accuracy`` -> ``accuracy.tex``) and LaTeX label.
        title: caption.
        header: column names.
        rows: one list of cells per row (plain strings are cells without emphasis).
        align: one of ``l``/``r`` per column.
        notes: footnotes printed under the table.
    """

    name: str
    title: str
    header: list[str]
    rows: list[list[Cell | str]]
    align: str
    notes: list[str] = field(default_factory=list)


def _cell(c: Cell | str) -> Cell:
    return c if isinstance(c, Cell) else Cell(c)


def to_markdown(t: Table) -> str:
    """GitHub-flavoured markdown: ``**best**`` and ``<u>second</u>``, notes as paragraphs."""

    def fmt(c: Cell | str) -> str:
        c = _cell(c)
        text = c.text.replace("|", "\\|")
        return {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(c.style or "", text)

    lines = [f"### {t.title}", "", "| " + " | ".join(t.header) + " |",
             "|" + "|".join(":--" if a == "l" else "--:" for a in t.align) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in t.rows]
    for note in t.notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "–": "--", "×": r"$\times$", "†": r"$^\dagger$", "≈": r"$\approx$",
                  "→": r"$\rightarrow$", "`": "", "Δ": r"$\Delta$", "≥": r"$\geq$", "<": r"$<$", ">": r"$>$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few non-ASCII symbols the tables use."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(t: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""

    def fmt(c: Cell | str) -> str:
        c = _cell(c)
        text = latex_escape(c.text)
        return {"best": rf"\textbf{{{text}}}", "second": rf"\underline{{{text}}}"}.get(c.style or "", text)

    lines = [r"% needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(t.title)}}}", rf"\label{{tab:{t.name}}}",
             rf"\begin{{tabular}}{{{t.align}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    lines += [" & ".join(fmt(c) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        lines += [r"\par\smallskip\footnotesize"] + [latex_escape(n) + r"\par" for n in t.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(t: Table) -> str:
    """An HTML ``<table>`` with caption and notes (for the report)."""

    def fmt(c: Cell | str, tag: str, align: str) -> str:
        c = _cell(c)
        text = html.escape(c.text)
        text = {"best": f"<b>{text}</b>", "second": f"<u>{text}</u>"}.get(c.style or "", text)
        return f'<{tag} class="{align}">{text}</{tag}>'

    head = "".join(fmt(h, "th", a) for h, a in zip(t.header, t.align))
    body = "\n".join("<tr>" + "".join(fmt(c, "td", a) for c, a in zip(row, t.align)) + "</tr>" for row in t.rows)
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in t.notes)
    return (f'<table id="{t.name}"><caption>{html.escape(t.title)}</caption>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table>\n{notes}\n")
