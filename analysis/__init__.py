"""Analysis: run directories -> one frame -> paper-style tables, figures and an HTML report.

Reads only run files (DESIGN.md section 4). Entry points: :func:`analysis.collect.collect`,
:func:`analysis.tables.build_tables`, :func:`analysis.plots.make_figures`,
:func:`analysis.report.write_report`, and the ``grass tables | plots | report`` commands. Every
compared number carries its uncertainty (:mod:`analysis.estimates`, :mod:`analysis.stats`);
:mod:`analysis.paired` compares methods seed by seed.
"""
