"""Typed run configuration: dataclass defaults in code, YAML deltas, ``key=value`` overrides.

A run is described by one :class:`RunConfig`. The ``method`` section is typed per method: its
schema is the ``Config`` dataclass of the method named by ``method.name`` (see
:mod:`grass.registry`), so ``method.rank=8`` is valid for ``lora`` and an error for ``full``.

Precedence, lowest first: dataclass defaults, the YAML file, ``key=value`` overrides.
Every error is a :class:`ConfigError` whose message says what to change.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from grass.config_checks import check_ranges
from grass.errors import ConfigError


def _f(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with a help text (shown by ``grass config show``)."""
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class ModelConfig:
    name: str = _f("tiny-llama", "HF id, local folder, 'smollm2-135m', 'gemma3-270m' or a tiny test model "
                   "(tiny-llama, tiny-qwen2, tiny-gemma, tiny-gpt2)")
    dtype: str = _f("float32", "dtype of the weights: float32 | bfloat16")
    cache_dir: Optional[str] = _f(None, "where converted GGUF models are cached (default $GRASS_CACHE or ~/.cache/grass)")
    init: str = _f("pretrained", "pretrained | random: random weights built from the model's config (memory and "
                   "speed benchmarks where the weights are not available; accuracy is meaningless)")
    tokenizer: Optional[str] = _f(None, "HF id or folder of the tokenizer, for a model folder saved without its "
                                        "own; null = the model's")


@dataclass
class DataConfig:
    train: Optional[str] = _f(None, "training data: a JSON/JSONL file, a mixture ('commonsense', 'math') or "
                              "a benchmark; empty = the small built-in default set")
    max_examples: Optional[int] = _f(None, "use at most this many training examples (after a seeded shuffle)")
    shuffle: bool = _f(True, "shuffle the training examples every epoch (seeded)")
    heldout: Optional[float] = _f(None, "set aside this many training examples (a count >= 1, or a fraction < 1) "
                                  "that no run trains on, for eval.heldout_loss; the split depends only on the "
                                  "data and data.heldout_seed, so every method and run seed sees the same one")
    heldout_seed: int = _f(0, "salt of the held-out split (not the run seed: runs stay paired)")


@dataclass
class TrainConfig:
    max_steps: int = _f(100, "optimizer steps (GRASS probe steps included)")
    batch_size: int = _f(4, "examples per micro-batch (per process under DDP)")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    seq_len: int = _f(512, "examples are truncated to this many tokens")
    lr: float = _f(1e-4, "peak learning rate")
    weight_decay: float = _f(0.0, "AdamW decoupled weight decay")
    adam_beta1: float = _f(0.9, "AdamW beta1")
    adam_beta2: float = _f(0.999, "AdamW beta2")
    adam_eps: float = _f(1e-8, "AdamW epsilon")
    warmup_ratio: float = _f(0.03, "fraction of update steps with linear warm-up")
    min_lr_ratio: float = _f(0.0, "cosine decay ends at lr * min_lr_ratio")
    max_grad_norm: float = _f(1.0, "global gradient-norm clipping; 0 disables")
    precision: str = _f("fp32", "fp32 | bf16 (autocast) | auto (bf16 where the device computes it natively: "
                                "a bf16 GPU, or a CPU with AVX512-BF16/AMX; else fp32)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward to save memory")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    parallel: str = _f("ddp", "with several processes (torchrun, submitit tasks): ddp (replicas) | fsdp (FSDP2: "
                       "parameters, gradients, optimizer state sharded over the processes)")
    log_every: int = _f(1, "write a metrics.jsonl line every N steps")
    checkpoint_every: int = _f(0, "save a resumable checkpoint every N steps; 0 = only on preemption")
    save_model: str = _f("none", "none | full (merged weights) | adapter (PEFT adapters only)")


@dataclass
class EvalConfig:
    benchmarks: list = _f([], "benchmarks to evaluate after training (see `grass data list`)")
    limit: Optional[int] = _f(None, "evaluate at most this many items per benchmark")
    batch_size: int = _f(16, "generation batch size")
    max_new_tokens: Optional[int] = _f(None, "greedy generation budget per item (default: 32 for multiple "
                                              "choice, 256 for arithmetic)")
    lm_eval: bool = _f(False, "also evaluate through lm-eval (log-likelihood multiple choice)")
    heldout_loss: bool = _f(False, "report loss/heldout (token mean over response tokens of the data.heldout "
                                   "examples) and its standard error at the end of the run")
    heldout_every: int = _f(0, "also log loss/heldout to metrics.jsonl every N steps (0: only at the end)")


@dataclass
class LogConfig:
    wandb: str = _f("auto", "auto (WANDB_MODE, else offline) | offline | online | disabled")
    project: Optional[str] = _f(None, "W&B project (default $WANDB_PROJECT, else 'grass')")
    entity: Optional[str] = _f(None, "W&B entity (default $WANDB_ENTITY)")
    runs_dir: Optional[str] = _f(None, "root of run directories (default $GRASS_RUNS_DIR or ./runs)")
    experiment: str = _f("default", "experiment name: runs land in <runs_dir>/<experiment>/<run_id>")
    run_id: Optional[str] = _f(None, "fixed run id; default: a hash of the resolved config")
    tags: list = _f([], "extra W&B tags")


@dataclass
class MethodConfig:
    """Base of every method's config; each method subclasses it with its own fields."""

    name: str = _f("full", "full | lora | dora | lisa | grass | badam")


@dataclass
class RunConfig:
    seed: int = _f(0, "seed of everything: data order, init of adapters, layer sampling")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    method: MethodConfig = field(default_factory=MethodConfig)


# Sections that do not change what a run computes: left out of the run id.
_NOT_IN_RUN_ID = ("log",)
# Fields added after runs were first recorded: left out of the run id while at the value that
# reproduces the behaviour from before they existed (not always today's default), so adding a field
# never changes the id (and so never re-runs) a finished run.
ADDED_LATER = {("model", "init"): "pretrained", ("method", "offload_chunk_mb"): None,
                ("method", "offload_fp32_state"): True, ("data", "heldout"): None, ("data", "heldout_seed"): 0,
                ("eval", "heldout_loss"): False, ("eval", "heldout_every"): 0, ("model", "tokenizer"): None,
                ("train", "parallel"): "ddp", ("method", "probe_checkpointing"): False}


# Fields that change how a run is recorded, not what it computes: hashed at their default value,
# so turning on checkpoints (e.g. to survive preemption) or logging more often keeps a run's id.
_NOT_COMPUTED = {("train", "checkpoint_every"): 0, ("train", "log_every"): 1}
# Fields that only act when another field has a value: left out of the run id otherwise, so a
# default that changes them (the offload engine's, probe checkpointing's) re-runs only the runs it
# changes. Probe checkpointing does nothing in a run that checkpoints every step already.
_ONLY_WHEN = {("method", "offload_chunk_mb"): (("method", "state_policy"), "offload"),
              ("method", "offload_fp32_state"): (("method", "state_policy"), "offload"),
              ("method", "probe_checkpointing"): (("train", "gradient_checkpointing"), False)}


def field_acts(d: dict, section: str, key: str) -> bool:
    """Whether ``section.key`` acts in the config ``d`` (as :func:`to_dict` gives it): False for a
    field that only acts when another field has a value (``_ONLY_WHEN``) that ``d`` lacks."""
    gate = _ONLY_WHEN.get((section, key))
    return gate is None or d.get(gate[0][0], {}).get(gate[0][1]) == gate[1]


def _schema_keys(cls: type) -> dict[str, Any]:
    """Field name -> nested dataclass type (or None for a leaf)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        t = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        out[f.name] = type(t) if dataclasses.is_dataclass(t) else None
    return out


def _check_keys(user: dict, cls: type, prefix: str = "") -> None:
    """Raise ConfigError naming the closest valid key for any key ``cls`` does not have."""
    keys = _schema_keys(cls)
    for k, v in user.items():
        full = f"{prefix}{k}"
        if k not in keys:
            valid = [f"{prefix}{n}" for n in keys]
            close = difflib.get_close_matches(full, valid, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
            raise ConfigError(f"unknown config key '{full}': {hint}")
        sub = keys[k]
        if sub is not None:
            if not isinstance(v, dict):
                raise ConfigError(f"config key '{full}' is a section; set its fields, e.g. {full}.<field>=...")
            _check_keys(v, sub, full + ".")


def method_config_class(name: str) -> type:
    from grass.registry import get_method  # late: the registry imports method modules lazily

    return get_method(name).Config


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Resolve a run configuration.

    Args:
        path: optional YAML file holding deltas from the defaults.
        overrides: ``key=value`` strings (``train.lr=3e-4``), applied last.

    Returns:
        The validated :class:`RunConfig` (``method`` is the method's own config dataclass).

    Raises:
        ConfigError: missing/unparsable file, unknown key, wrong type, invalid value.
    """
    layers: list[dict] = []
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' does not exist")
        try:
            loaded = OmegaConf.to_container(OmegaConf.load(p))
        except (OmegaConfBaseException, Exception) as e:  # yaml.YAMLError and friends
            raise ConfigError(f"cannot parse config file '{p}': {str(e).splitlines()[0]}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping of sections, not {type(loaded).__name__}")
        layers.append(loaded)
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override '{o}' is not key=value (e.g. train.lr=3e-4)")
    if overrides:
        try:
            layers.append(OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides))))
        except OmegaConfBaseException as e:
            raise ConfigError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None
    return config_from_dicts(layers)


def config_from_dicts(layers: list[dict]) -> RunConfig:
    """Merge dict deltas (lowest precedence first) onto the defaults and validate."""
    method_name = MethodConfig.name
    for layer in layers:
        m = layer.get("method")
        if isinstance(m, dict) and "name" in m:
            method_name = str(m["name"])
    mcls = method_config_class(method_name)

    @dataclass
    class _Run(RunConfig):
        method: MethodConfig = field(default_factory=mcls)  # type: ignore[assignment]

    for layer in layers:
        _check_keys(layer, _Run)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(_Run), *layers)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        first = str(e).splitlines()[0]
        raise ConfigError(f"invalid value for '{key}': {first}" if key else f"invalid config: {first}") from None
    cfg = RunConfig(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(RunConfig)})
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Value checks OmegaConf's types cannot express."""
    t = cfg.train
    for key in ("max_steps", "batch_size", "grad_accum", "seq_len", "log_every"):
        if getattr(t, key) <= 0:
            raise ConfigError(f"train.{key} must be positive, got {getattr(t, key)}")
    if t.lr <= 0:
        raise ConfigError(f"train.lr must be positive, got {t.lr}")
    choices = {
        "train.precision": (t.precision, ("fp32", "bf16", "auto")),
        "train.save_model": (t.save_model, ("none", "full", "adapter")),
        "train.parallel": (t.parallel, ("ddp", "fsdp")),
        "model.dtype": (cfg.model.dtype, ("float32", "bfloat16")),
        "model.init": (cfg.model.init, ("pretrained", "random")),
        "log.wandb": (cfg.log.wandb, ("auto", "offline", "online", "disabled")),
    }
    for key, (value, ok) in choices.items():
        if value not in ok:
            raise ConfigError(f"{key} must be one of {', '.join(ok)}; got '{value}'")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {t.warmup_ratio}")
    if cfg.eval.limit is not None and cfg.eval.limit <= 0:
        raise ConfigError(f"eval.limit must be positive or null, got {cfg.eval.limit}")
    if cfg.data.heldout is not None and cfg.data.heldout <= 0:
        raise ConfigError(f"data.heldout must be a count >= 1 or a fraction in (0, 1), got {cfg.data.heldout}")
    if cfg.eval.heldout_every < 0:
        raise ConfigError(f"eval.heldout_every must be >= 0, got {cfg.eval.heldout_every}")
    if (cfg.eval.heldout_loss or cfg.eval.heldout_every) and cfg.data.heldout is None:
        raise ConfigError("eval.heldout_loss and eval.heldout_every need held-out examples: set data.heldout "
                          "(e.g. data.heldout=256)")
    check_ranges(cfg)
    check = getattr(cfg.method, "validate", None)
    if check is not None:
        check(cfg)


def to_dict(cfg: RunConfig) -> dict:
    """Plain nested dict of a config (for YAML/JSON)."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))


def run_id(cfg: RunConfig) -> str:
    """Stable id of a run: ``<method>-<hash>`` of the resolved config, minus logging settings.

    Key order never matters (the JSON is sorted), so reordering a grid's axes changes nothing.
    """
    if cfg.log.run_id:
        return cfg.log.run_id
    d = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_IN_RUN_ID}
    for (section, key), default in ADDED_LATER.items():
        if d.get(section, {}).get(key, default) == default:
            d[section].pop(key, None)
    for (section, key), default in _NOT_COMPUTED.items():
        d[section][key] = default
    for section, key in _ONLY_WHEN:
        if key in d.get(section, {}) and not field_acts(d, section, key):
            d[section].pop(key)
    digest = hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{cfg.method.name}-{digest}"


def describe(cfg: RunConfig) -> str:
    """The resolved config as YAML-like text with each field's help text as a comment."""
    lines: list[str] = []

    def walk(obj: Any, indent: int) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            pad = "  " * indent
            if dataclasses.is_dataclass(value):
                lines.append(f"{pad}{f.name}:")
                walk(value, indent + 1)
            else:
                text = json.dumps(value) if not isinstance(value, str) else value
                help_ = f.metadata.get("help", "")
                lines.append(f"{pad}{f.name}: {text}" + (f"    # {help_}" if help_ else ""))

    walk(cfg, 0)
    return "\n".join(lines)


def from_run_dir(run_dir: str | os.PathLike) -> RunConfig:
    """Load the resolved config saved in a run directory.

    A field the file does not record (the run predates it, :data:`ADDED_LATER`) takes the value
    that reproduces how the run ran, not today's default: a resumed or re-evaluated old run computes
    what it computed before and keeps its run id (its folder's name).
    """
    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml)")
    try:
        saved = OmegaConf.to_container(OmegaConf.load(p))
    except (yaml.YAMLError, OSError, ValueError) as e:  # bad YAML; a bare scalar ("0") is an OSError
        raise ConfigError(f"'{p}' is not readable YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"'{p}' is not a run's config: expected sections (model:, method:, ...), "
                          f"got a {type(saved).__name__}")
    # A run writes its whole resolved config; a file without the model's and the method's names is
    # not one, and filling it with defaults would silently make it a default full fine-tuning run.
    for section in ("model", "method"):
        value = saved.get(section)  # a scalar section is refused below, as in any config
        if value is None or (isinstance(value, dict) and not value.get("name")):
            raise ConfigError(f"'{p}' is not a run's config: it names no {section} ({section}.name); "
                              "a run's config.yaml records its whole resolved config")
    # Fill the missing fields before validating, so the checks see the values the run ran with.
    saved_method = saved.get("method") if isinstance(saved.get("method"), dict) else {}  # else refused below
    method = method_config_class(str(saved_method.get("name", MethodConfig.name)))()
    sections = {f.name: getattr(RunConfig(), f.name) for f in dataclasses.fields(RunConfig)} | {"method": method}
    before = {}
    for (section, key), value in ADDED_LATER.items():
        if key not in (saved.get(section) or {}) and hasattr(sections[section], key):
            before.setdefault(section, {})[key] = value
    return config_from_dicts([before, saved])
