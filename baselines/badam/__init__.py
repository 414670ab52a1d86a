"""BAdam (Luo et al. 2024): one block of parameters trained at a time, through the ``badam`` package."""
