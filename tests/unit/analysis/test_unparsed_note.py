"""The accuracy tables note the share of answers that could not be extracted (eval/unparsed/<b>)."""
from __future__ import annotations

from analysis.collect import collect
from analysis.tables import accuracy_table, unparsed_note


def test_tables_note_the_unparsed_share(write_run, tmp_path):
    for method, seed, piqa in (("full", 0, 90.0), ("full", 1, 94.0), ("lisa", 0, 3.0)):
        write_run(tmp_path, "exp", method, seed, {"boolq": 60.0, "piqa": 10.0},
                  mem={"eval/unparsed/piqa": piqa, "eval/unparsed/boolq": 0.0})
    coll = collect("exp", tmp_path)
    note = unparsed_note(coll)
    assert note.endswith("% of items, mean per row (range over the rows): PIQA 3–92.")
    assert note in accuracy_table(coll).notes
    write_run(tmp_path, "clean", "full", 0, {"piqa": 50.0}, mem={"eval/unparsed/piqa": 0.0})
    assert unparsed_note(collect("clean", tmp_path)) == "Unparsed answers: none."
    write_run(tmp_path, "old", "full", 0, {"piqa": 50.0})  # recorded before the share existed
    assert unparsed_note(collect("old", tmp_path)) is None
