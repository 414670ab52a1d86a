"""Running experiment grids: as a SLURM job array through submitit (``launch``), as local
processes, or in-process; named cluster profiles (``profiles/*.yaml``); the checkpointable job
(``job``) and the per-run status table (``status``)."""
