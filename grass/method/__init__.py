"""GRASS: config, layer importance (MGN), sampler, the method (its offload engine is :mod:`grass.optim.offload`)."""
