"""GRASS: config, layer importance (MGN), sampler, optimizer-state offloading, the method."""
