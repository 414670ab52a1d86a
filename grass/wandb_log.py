"""Weights & Biases logging for the training loop (``log.wandb: auto | offline | online | disabled``).

The defaults defer to W&B's own environment variables, as W&B users expect: ``log.wandb=auto``
(the default) takes the mode from ``WANDB_MODE`` (else offline), ``log.project`` / ``log.entity``
default to ``WANDB_PROJECT`` (else ``grass``) / ``WANDB_ENTITY``, and ``WANDB_DIR`` moves W&B's
files out of the run directory. An explicit ``log.*`` value always wins.

W&B is a mirror of the run directory, never the record: ``metrics.jsonl`` and ``result.json``
are written whatever happens here, and a W&B failure (not installed, no network, bad settings)
warns once and turns the logger into a no-op, so training never dies because of W&B (an unknown
``WANDB_MODE`` is bad input, refused before the run starts: :func:`resolve_mode`).

Runs are grouped by experiment and tagged with method, model, task and seed, so the W&B UI can
compare them. Offline runs land in ``<run_dir>/wandb/offline-run-*`` (or ``$WANDB_DIR/wandb/``); upload them
later with ``wandb sync <run_dir>/wandb/offline-run-*``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Per-layer lists in a metrics row: logged as one scalar per layer and kept for the heatmap.
PER_LAYER = ("layer_probs", "mgn")
_warned: set[str] = set()
# WANDB_MODE values wandb.init accepts ("dryrun" = offline, "run" = online, as W&B reads them)
WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")


def resolve_mode(setting: str) -> str:
    """The W&B mode of a run: an explicit ``log.wandb`` wins; ``auto`` takes ``WANDB_MODE``, else offline.

    Raises:
        ConfigError: ``WANDB_MODE`` holds a value W&B does not know.
    """
    if setting != "auto":
        return setting
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if not env:
        return "offline"
    if env not in WANDB_MODES:
        from grass.errors import ConfigError

        raise ConfigError(f"WANDB_MODE={os.environ['WANDB_MODE']!r} is not a W&B mode: set WANDB_MODE to online, "
                          f"offline or disabled, or set log.wandb=online|offline|disabled (which wins)")
    return env


def _source(setting: str) -> str:
    """Where the mode came from, for messages."""
    if setting != "auto":
        return f"log.wandb={setting}"
    env = os.environ.get("WANDB_MODE")
    return f"log.wandb=auto, WANDB_MODE={env}" if env else "log.wandb=auto (WANDB_MODE unset: offline)"


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _is_number(v: Any) -> bool:
    """A finite real scalar (numpy scalars included); NaN/inf are left out as in metrics.jsonl."""
    return isinstance(v, numbers.Real) and math.isfinite(v)


class WandbLogger:
    """Mirror a run's config, per-step metrics, summary and layer heatmaps to W&B.

    Args:
        cfg: the resolved :class:`grass.config.RunConfig`.
        run_dir: the run directory; W&B's files go under ``run_dir/wandb`` (``$WANDB_DIR/wandb`` if set).
    """

    def __init__(self, cfg, run_dir: Path):
        self.run = None
        self._wandb = None
        self._method = cfg.method.name
        self._history: dict[str, list[tuple[int, list]]] = {"active_layers": [], "layer_probs": []}
        self._finished = False
        mode = resolve_mode(cfg.log.wandb)
        if mode == "disabled":
            return  # no import at all: disabled must cost nothing
        try:
            import wandb
        except ImportError:
            _warn_once(f"{_source(cfg.log.wandb)} but wandb is not installed (pip install 'grass-suite[wandb]'); "
                       "continuing without W&B")
            return
        run_dir = Path(run_dir)
        tags = [cfg.method.name, cfg.model.name, cfg.data.train or "default", f"seed{cfg.seed}", *cfg.log.tags]
        project = cfg.log.project or os.environ.get("WANDB_PROJECT") or "grass"
        entity = cfg.log.entity or os.environ.get("WANDB_ENTITY") or None
        try:
            self.run = wandb.init(mode=mode, project=project, entity=entity,
                                  dir=os.environ.get("WANDB_DIR") or str(run_dir),
                                  group=cfg.log.experiment, name=run_dir.name, job_type="train",
                                  tags=[str(t)[:64] for t in tags],  # W&B rejects tags over 64 characters
                                  config=dataclasses.asdict(cfg), reinit="create_new")
            self._wandb = wandb
        except Exception as e:  # noqa: BLE001 - any W&B failure must leave training running
            _warn_once(f"W&B init failed in {mode} mode ({type(e).__name__}: {e}); continuing without W&B")
            self.run = None

    @property
    def active(self) -> bool:
        """True while a W&B run is open."""
        return self.run is not None

    def log(self, row: dict, step: int) -> None:
        """Log one ``metrics.jsonl`` row: scalars as they are, per-layer lists as ``<key>/L<i>``."""
        if self.run is None:
            return
        payload: dict[str, float] = {}
        for key, value in row.items():
            if key == "step" or value is None:
                continue
            if isinstance(value, bool):
                payload[key] = int(value)
            elif _is_number(value):
                payload[key] = value
            elif isinstance(value, (list, tuple)) and key in PER_LAYER:
                payload.update({f"{key}/L{i}": v for i, v in enumerate(value) if _is_number(v)})
            elif isinstance(value, (list, tuple)) and key == "active_layers":
                payload["active_layers/count"] = len(value)
            if key in self._history and isinstance(value, (list, tuple)):
                self._history[key].append((step, list(value)))
        self._call(lambda: self.run.log(payload, step=step))

    def log_summary(self, result: dict) -> None:
        """Put the run's ``result.json`` (accuracy, memory, speed, provenance) in the W&B summary."""
        if self.run is None:
            return
        summary = {k: v for k, v in result.items() if v is not None}
        self._call(lambda: self.run.summary.update(summary))

    def finish(self, exit_code: int = 0) -> None:
        """Log the layer heatmap (LISA/GRASS) and close the W&B run; safe to call twice."""
        if self.run is None or self._finished:
            return
        self._finished = True
        if self._history["active_layers"] or self._history["layer_probs"]:
            self._call(lambda: self.run.log({"layers/heatmap": self._wandb.Image(self._heatmap(),
                                             caption="active layers and sampling probabilities per step")}))
        self._call(lambda: self.run.finish(exit_code=exit_code))
        self.run = None

    def _call(self, fn) -> None:
        """Run a W&B call; on any error warn once and stop logging (training goes on)."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            _warn_once(f"W&B logging failed ({type(e).__name__}: {e}); continuing without W&B")
            self.run = None

    def _heatmap(self):
        """Layers x steps image (RGB array) of the active layers and, if logged, the probabilities."""
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        panels = [(k, h) for k, h in self._history.items() if h]
        # Number of layers: the probability vectors' length, else the highest active index seen.
        n = max([len(v) for _, v in self._history["layer_probs"]] +
                [max(v) + 1 for _, v in self._history["active_layers"] if v] + [1])
        fig = Figure(figsize=(6 * len(panels), 3.5), layout="constrained")
        FigureCanvasAgg(fig)
        for ax, (key, hist) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
            steps = [s for s, _ in hist]
            mat = np.zeros((n, len(hist)))
            for j, (_, v) in enumerate(hist):
                if key == "active_layers":
                    mat[v, j] = 1.0
                else:
                    mat[: len(v), j] = v
            im = ax.imshow(mat, aspect="auto", origin="lower", interpolation="nearest",
                           extent=[steps[0] - 0.5, steps[-1] + 0.5, -0.5, n - 0.5],
                           cmap="Greys" if key == "active_layers" else "viridis")
            if key != "active_layers":
                fig.colorbar(im, ax=ax, label="sampling probability p")
            ax.set_title(f"{self._method}: {'active layers (black)' if key == 'active_layers' else 'layer probabilities'}")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("decoder layer")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
