"""One module per experiment, each defining ``EXPERIMENT`` (see :mod:`experiments.registry`)."""
