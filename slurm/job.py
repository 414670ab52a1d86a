"""The SLURM job of one run: a submitit ``Checkpointable`` callable around :func:`grass.train.train`.

Preemption and time limits: SLURM (through submitit's ``--signal``) sends SIGUSR2 before it kills
the job. submitit's handler would call :meth:`TrainJob.checkpoint` at once, in the middle of a
training step, where there is nothing consistent to save. So while the run trains, the signal only
sets a stop flag (:class:`slurm.runner.StopOnSignal`); the training loop saves a checkpoint at the
next step boundary and raises :class:`grass.train.Preempted`, and only then is submitit's handler
called: it calls :meth:`TrainJob.checkpoint` (which returns the same job), requeues it and exits.
The requeued job runs ``train`` again, which resumes from the checkpoint (model, optimizer
including offloaded state, method state, RNG, data position, step), so its final metrics equal an
uninterrupted run's. If no step boundary comes within ``grace_s`` seconds, the job is requeued
anyway and resumes from the last periodic checkpoint (``train.checkpoint_every``).
"""
from __future__ import annotations

import logging
import signal

import submitit

from grass.config import config_from_dicts
from slurm.runner import StopOnSignal, run_config, summary


class TrainJob(submitit.helpers.Checkpointable):
    """Callable submitted once per run (``executor.map_array(TrainJob(...), configs)``).

    Args:
        grace_s: seconds to wait for a step boundary after the preemption signal before requeueing
            anyway (keep it below the profile's ``signal_delay_s``).
    """

    def __init__(self, grace_s: float = 60.0):
        self.grace_s = grace_s

    def __call__(self, config: dict) -> dict:
        """Train the run described by ``config`` (a nested dict of a resolved RunConfig).

        Returns:
            A summary of ``result.json`` (run_id, status, final loss, ...).
        """
        from grass.train import Preempted

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
        cfg = config_from_dicts([config])
        with StopOnSignal((signal.SIGUSR2,), forward=True, grace_s=self.grace_s) as stop:
            try:
                return summary(run_config(cfg, stop_requested=stop.requested))
            except Preempted:
                stop.forward()  # submitit: checkpoint() -> requeue -> exit
                raise  # only reached when no submitit handler was installed (not under SLURM)

    def checkpoint(self, config: dict) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption/timeout: resubmit the same run; ``train`` resumes it
        from the checkpoint the loop has just saved."""
        return submitit.helpers.DelayedSubmission(TrainJob(self.grace_s), config)
