"""``docs/reproduction.md`` from committed result files: the evidence and one verdict per claim.

``grass reproduction cpu_repro --runs-dir results --out docs/reproduction.md`` writes the whole
document from ``results/<experiment>/*/{config.yaml, metrics.jsonl, result.json}`` alone, with its
figures beside it; a person adds only the discussion (the text under the ``Discussion`` heading is
kept when the document is written again).

Verdict rule (DESIGN.md section 8): a comparison between two methods is paired by seed (same data
order, same held-out examples, same evaluation items). A mean paired difference within two
standard errors of the mean (over seeds) is "inconclusive at this budget"; beyond that it is
"reproduced" or "not reproduced" by its sign. Held-out loss is the primary measure (it has far
more power than a few hundred accuracy items); accuracy is reported beside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import Collection, collect, device_model, read_metrics
from analysis.stats import mean_se, paired_t_p, sign_test_p
from analysis.table_format import Table, to_markdown
from grass.errors import GrassError

DISCUSSION = "## Discussion"
INCONCLUSIVE = "inconclusive at this budget"


def method_key(row: pd.Series) -> str:
    """``grass*`` for GRASS with static importance (the paper's ablation), else the method name."""
    if row.get("method") == "grass" and row.get("cfg.method.mode") == "static":
        return "grass*"
    return str(row.get("method"))


@dataclass
class Paired:
    """Paired per-seed differences ``a - b`` of one metric on one task."""

    a: str
    b: str
    metric: str
    task: str
    seeds: list[int]
    diffs: list[float]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return mean_se(self.diffs)[0] if self.diffs else math.nan

    @property
    def se(self) -> float:
        return mean_se(self.diffs)[1] if self.diffs else math.nan

    @property
    def margin(self) -> float:
        """Half-width of the 95% interval of the mean: ``t(0.975, n-1)`` standard errors, at least two.

        Two standard errors is the issue's floor; with few seeds the standard error itself is
        uncertain (one degree of freedom at two seeds: t = 12.7), so the t quantile is used.
        """
        from scipy import stats

        return max(2.0, float(stats.t.ppf(0.975, self.n - 1))) * self.se if self.n >= 2 else math.nan

    def p_values(self) -> tuple[float, float]:
        """Two-sided paired t-test and exact sign-test p-values (NaN where undefined)."""
        if self.n < 2:
            return math.nan, math.nan
        t = paired_t_p(self.diffs)
        return (math.nan if t is None else t), sign_test_p(self.diffs)

    def verdict(self, lower_is_better: bool) -> str:
        """``reproduced`` when ``a`` beats ``b`` beyond :attr:`margin`, ``not reproduced`` when it loses
        beyond it, else inconclusive."""
        if self.n < 2 or not math.isfinite(self.se):
            return INCONCLUSIVE
        if abs(self.mean) <= self.margin:
            return INCONCLUSIVE
        better = self.mean < 0 if lower_is_better else self.mean > 0
        return "reproduced" if better else "not reproduced"

    def text(self, digits: int = 4) -> str:
        if self.n < 2:  # no spread to show: say so rather than print "± nan"
            return (f"{self.a} - {self.b} on {self.task}, {self.metric}: {self.mean:+.{digits}f} "
                    f"(one seed: no standard error, no test)")
        t, s = self.p_values()
        return (f"{self.a} - {self.b} on {self.task}, {self.metric}: {self.mean:+.{digits}f} ± {self.se:.{digits}f} "
                f"(mean ± s.e. over {self.n} seeds, 95% interval ± {self.margin:.{digits}f}; paired t p={t:.3g}, "
                f"sign p={s:.3g})")


def paired(runs: pd.DataFrame, a: str, b: str, metric: str, task: str) -> Paired:
    """Pair runs of methods ``a`` and ``b`` (see :func:`method_key`) on ``task`` by seed."""
    if metric not in runs:  # no run recorded it (yet)
        return Paired(a, b, metric, task, [], [])
    sel = runs[(runs["task"] == task) & runs[metric].notna()]
    va = sel[sel["_key"] == a].groupby("seed")[metric].mean()
    vb = sel[sel["_key"] == b].groupby("seed")[metric].mean()
    seeds = sorted(set(va.index) & set(vb.index))
    return Paired(a, b, metric, task, [int(s) for s in seeds], [float(va[s] - vb[s]) for s in seeds])


def probe_mgn(metrics: pd.DataFrame) -> np.ndarray | None:
    """The MGN profile at the end of the probe (the first logged non-null ``mgn``), mean-normalized."""
    if "mgn" not in metrics:
        return None
    for v in metrics["mgn"]:
        if isinstance(v, list) and v:
            m = np.asarray(v, dtype=float)
            return m / m.mean()
    return None


def draws(metrics: pd.DataFrame) -> list[tuple[int, tuple[int, ...]]]:
    """``(step, active set)`` at every step where the active set changed."""
    out: list[tuple[int, tuple[int, ...]]] = []
    for step, active in zip(metrics.get("step", []), metrics.get("active_layers", [])):
        if isinstance(active, list) and active and (not out or tuple(active) != out[-1][1]):
            out.append((int(step), tuple(active)))
    return out


def prob_drift(metrics: pd.DataFrame) -> float:
    """Largest change of any layer's sampling probability after the probe, over the run."""
    rows = [np.asarray(p, dtype=float) for p, probe in zip(metrics.get("layer_probs", []),
                                                           metrics.get("probe", [False] * len(metrics)))
            if isinstance(p, list) and not probe]
    return float(np.max(np.abs(np.stack(rows) - rows[0]))) if len(rows) > 1 else 0.0


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats

    return float(stats.spearmanr(x, y).statistic)


@dataclass
class Verdict:
    claim: str
    verdict: str
    numbers: str
    reason: str


def _loss_claim(runs, claim: str, a: str, b: str, task: str) -> tuple[Verdict, list[Paired]]:
    loss = paired(runs, a, b, "loss/heldout", task)
    acc = paired(runs, a, b, "acc/avg", task)
    v = loss.verdict(lower_is_better=True)
    numbers = "; ".join(p.text(4 if p.metric.startswith("loss") else 2) for p in (loss, acc) if p.n)
    if loss.n < 2:
        reason = f"fewer than two seeds with both {a} and {b} on {task} ({loss.n} so far)"
    elif v == INCONCLUSIVE:
        reason = "the 95% interval of the paired held-out-loss difference contains zero"
    else:
        reason = (f"the 95% interval of the paired held-out-loss difference excludes zero "
                  f"({'lower' if loss.mean < 0 else 'higher'} is {a})")
    return Verdict(claim, v if loss.n else INCONCLUSIVE, numbers or "no paired runs yet", reason), [loss, acc]


def train_time_s(metrics: pd.DataFrame | None, steps: int) -> float | None:
    """Wall time of a run's ``steps`` training steps, probe and warm-up included: the sum of the logged
    ``step_time_s`` (held-out evaluation and checkpoints are not in it).

    None unless every step was logged (``train.log_every`` 1); a step run twice (a resume) counts its
    last try.
    """
    if metrics is None or "step_time_s" not in metrics or "step" not in metrics:
        return None
    last = metrics.dropna(subset=["step_time_s"]).drop_duplicates("step", keep="last")
    if set(last["step"].astype(int)) != set(range(steps)):
        return None
    return float(last["step_time_s"].sum())


def _relative_time(runs: pd.DataFrame, task: str, metric: str) -> tuple[Paired, int]:
    """GRASS / LISA - 1 of ``metric`` (a time) per seed, pairing runs on the same device only
    (:func:`analysis.collect.device_model`); a seed paired on several devices counts once, averaged.

    Returns the pairs and how many seeds have both methods but not on one device (left out).
    """
    if metric not in runs:  # no run recorded it (yet)
        return Paired("grass", "lisa", metric, task, [], []), 0
    per_seed: dict[int, list[float]] = {}
    for _, same in runs.groupby(device_model(runs)):
        st = paired(same, "grass", "lisa", metric, task)
        lisa = same[(same["task"] == task) & (same["_key"] == "lisa")].groupby("seed")[metric].mean()
        for seed, d in zip(st.seeds, st.diffs):
            per_seed.setdefault(seed, []).append(d / float(lisa[seed]))
    seeds = sorted(per_seed)
    return Paired("grass", "lisa", metric, task, seeds, [float(np.mean(per_seed[s])) for s in seeds]), \
        len(set(paired(runs, "grass", "lisa", metric, task).seeds) - set(seeds))


def probe_profiles(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame]) -> dict[str, dict[int, np.ndarray]]:
    """Task -> seed -> the probe MGN profile of that seed's GRASS runs.

    One per seed: the adaptive and static runs of a seed run the same probe (same model, same
    batches), so their profiles are one measurement, and counting both would make a seed agree
    with itself.
    """
    out: dict[str, dict[int, np.ndarray]] = {}
    for _, r in runs[runs["method"] == "grass"].iterrows():
        p = probe_mgn(metrics[r["run_id"]]) if r["run_id"] in metrics else None
        if p is not None:
            out.setdefault(r["task"], {}).setdefault(int(r["seed"]), p)
    return out


def verdicts(coll: Collection, metrics: dict[str, pd.DataFrame],
             probe: tuple[Collection, dict[str, pd.DataFrame]] | None = None) -> tuple[list[Verdict], dict]:
    """One :class:`Verdict` per claim (a)-(f) and the supporting figures (for the document).

    ``probe``: another experiment's runs and metrics (e.g. ``cpu_probe``) to take claim (a)'s
    profiles from instead of ``coll``'s GRASS runs; they are then compared with ``coll``'s
    profiles of the same task and seed (``extra["probe_check"]``).
    """
    runs = coll.runs.copy()
    runs["_key"] = runs.apply(method_key, axis=1)
    tasks = [t for t in ("math", "commonsense") if t in set(runs["task"])]
    main_task = tasks[0] if tasks else "math"
    extra: dict = {"paired": []}
    out: list[Verdict] = []

    # (a) layer importance depends on the task: probe MGN profiles of GRASS runs, by task, one per seed.
    own = probe_profiles(runs, metrics)
    by_seed = own
    if probe is not None:
        by_seed = probe_profiles(probe[0].runs, probe[1])
        tasks = [t for t in ("math", "commonsense") if t in by_seed] or tasks
        extra["probe_check"] = [(t, s, _spearman(own[t][s], p), float(np.max(np.abs(own[t][s] - p))))
                                for t, ps in by_seed.items() for s, p in sorted(ps.items()) if s in own.get(t, {})]
    profiles = {t: list(by_seed.get(t, {}).values()) for t in tasks}
    extra["profiles"] = profiles
    extra["profiles_from"] = probe[0].experiment if probe is not None else coll.experiment
    source = f"{probe[0].experiment}: " if probe is not None else ""
    if len(tasks) == 2 and all(len(profiles[t]) >= 2 for t in tasks):
        mean = {t: np.mean(profiles[t], axis=0) for t in tasks}
        rho = _spearman(mean[tasks[0]], mean[tasks[1]])
        within = [_spearman(x, y) for t in tasks for i, x in enumerate(profiles[t]) for y in profiles[t][i + 1:]]
        across = [_spearman(x, y) for x in profiles[tasks[0]] for y in profiles[tasks[1]]]
        extra["rho"] = rho
        differ = max(across) < min(within)
        out.append(Verdict("(a) layer importance depends on the task",
                           "reproduced" if differ else INCONCLUSIVE,
                           f"{source}Spearman rank correlation of the mean probe profiles {rho:.3f} "
                           f"({', '.join(f'{t} {len(profiles[t])} seeds' for t in tasks)}); across tasks "
                           f"{min(across):.3f}..{max(across):.3f}, within a task (seeds) {min(within):.3f}..{max(within):.3f}",
                           "every cross-task correlation is below every seed-to-seed one" if differ else
                           "cross-task and seed-to-seed correlations overlap"))
    else:
        out.append(Verdict("(a) layer importance depends on the task", INCONCLUSIVE,
                           source + (", ".join(f"{t}: GRASS probe profiles of {len(profiles.get(t, []))} "
                                               f"seed{'' if len(profiles.get(t, [])) == 1 else 's'}" for t in tasks)
                                     or "no GRASS probe profiles"), "needs GRASS probe profiles of at least two seeds on each of the two tasks"))

    # (b) GRASS >= LISA, (c) adaptive >= static, (d) GRASS >= LoRA: paired held-out loss.
    for claim, a, b in (("(b) GRASS >= LISA at an equal budget", "grass", "lisa"),
                        ("(c) adaptive >= static importance (GRASS*)", "grass", "grass*"),
                        ("(d) GRASS >= LoRA", "grass", "lora")):
        v, ps = _loss_claim(runs, claim, a, b, main_task)
        extra["paired"] += ps
        out.append(v)

    # (c) needs the two runs of a seed to have drawn different active sets to test anything.
    div = []
    sel = runs[runs["task"] == main_task]
    for seed in sorted(set(sel["seed"])):
        ad = sel[(sel["_key"] == "grass") & (sel["seed"] == seed)]["run_id"]
        st = sel[(sel["_key"] == "grass*") & (sel["seed"] == seed)]["run_id"]
        if len(ad) and len(st) and ad.iloc[0] in metrics and st.iloc[0] in metrics:
            da, ds = draws(metrics[ad.iloc[0]]), draws(metrics[st.iloc[0]])
            differ = sum(x != y for x, y in zip(da, ds)) + abs(len(da) - len(ds))
            div.append((int(seed), differ, max(len(da), len(ds)), prob_drift(metrics[ad.iloc[0]])))
    extra["divergence"] = div
    if div and all(d[1] == 0 for d in div):
        out[-2] = Verdict(out[-2].claim, INCONCLUSIVE, out[-2].numbers,
                          "the adaptive and static runs of every seed drew exactly the same active sets, so "
                          "they trained identically: a tie here is not a finding")

    # (e) memory: the planner at the paper's setting (a CPU cannot show it: host and device are one memory).
    from analysis.projection import PAPER_SETTING, planned_gpu_gib
    from grass.memory.model import predict

    s = PAPER_SETTING
    pred = {m: predict(s["model"], m, precision=s["precision"], seq_len=s["seq_len"], batch=s["batch"],
                       grad_ckpt=s["grad_ckpt"]).total for m in ("full", "lora", "lisa", "grass")}
    below_lisa, lora_level = pred["grass"] < pred["lisa"], pred["grass"] <= 1.1 * pred["lora"]
    # The same planner at these runs' own configs, beside it.
    ours = planned_gpu_gib(sel)["total"].groupby(sel["_key"]).mean().dropna()
    ours_text = (f"; at these runs' configs ({main_task}): GRASS {ours['grass'] / ours['lisa']:.2f}x LISA"
                 if {"grass", "lisa"} <= set(ours.index) else "")
    out.append(Verdict("(e) GRASS's memory below LISA's and LoRA-level",
                       "reproduced (planner)" if below_lisa and lora_level else "not reproduced (planner)",
                       f"LLaMA2-7B, seq 1024 x 4, bf16: GRASS {pred['grass'] / 2**30:.2f} GiB = "
                       f"{pred['grass'] / pred['lisa']:.2f}x LISA, {pred['grass'] / pred['lora']:.2f}x LoRA, "
                       f"{pred['grass'] / pred['full']:.2f}x full (paper: 0.86x LISA, 0.37x full){ours_text}",
                       "predicted by the memory planner, not measured on a GPU (CPU accounting cannot show "
                       "offloading); LoRA-level taken as within 10% of LoRA"))

    # (f) MGN costs at most ~3% step time. MGN costs in two places: the probe (steps that run every
    # block's backward and update nothing, inside the same step budget) and the per-step RMS of the
    # active layers. The median step time leaves the probe out and sees only the second; the
    # training time of the whole step budget sees both. Each is GRASS / LISA - 1 paired by seed, only
    # where both ran on one kind of device (CPUs differ several-fold); the claim needs both to hold.
    steps = runs["cfg.train.max_steps"] if "cfg.train.max_steps" in runs else pd.Series(np.nan, index=runs.index)
    runs["_train_time_s"] = [np.nan if pd.isna(n) or (t := train_time_s(metrics.get(rid), int(n))) is None else t
                             for rid, n in zip(runs["run_id"], steps)]
    measures = [(_relative_time(runs, main_task, metric), label) for metric, label in
                (("speed/step_time_s_median", "median step time (probe left out)"),
                 ("_train_time_s", "training time of all steps (probe included)"))]
    numbers = []
    for (rel, unmatched), label in measures:
        apart = (f"; {unmatched} seed{'' if unmatched == 1 else 's'} left out: GRASS and LISA did not run on one "
                 f"known device" if unmatched else "")
        numbers.append(f"{label}: {100 * rel.mean:+.1f}% ± {100 * rel.se:.1f}% s.e. over {rel.n} seeds (95% interval "
                       f"{100 * (rel.mean - rel.margin):+.1f}% to {100 * (rel.mean + rel.margin):+.1f}%){apart}"
                       if rel.n >= 2 else f"{label}: {rel.n} paired seed{'' if rel.n == 1 else 's'}{apart}")
    rels = [rel for (rel, _), _ in measures]
    if any(r.n >= 2 and r.mean - r.margin > 0.03 for r in rels):
        verdict = "not reproduced"
    elif all(r.n >= 2 and r.mean + r.margin <= 0.03 for r in rels):
        verdict = "reproduced"
    else:
        verdict = INCONCLUSIVE
    enough = all(r.n >= 2 for r in rels)
    out.append(Verdict("(f) MGN costs at most ~3% step time", verdict, "GRASS / LISA - 1, " + "; ".join(numbers),
                       "wall time of runs on a shared CPU; each interval's upper end is compared with 3%, and both "
                       "must hold" if enough or verdict != INCONCLUSIVE else
                       "needs at least two seeds with both GRASS and LISA on the same kind of device, every step "
                       "logged (train.log_every 1) for the training time"))
    return out, extra


def _metrics(coll: Collection) -> dict[str, pd.DataFrame]:
    return {r["run_id"]: read_metrics(r["run_dir"]) for _, r in coll.runs.iterrows()}


def build(coll: Collection, fig_dir: Path, probe: Collection | None = None) -> str:
    """The document's markdown (without the discussion); ``probe``: claim (a)'s experiment, if another."""
    from analysis.plots_reproduction import reproduction_figures
    from analysis.projection import projection_table
    from analysis.tables import build_tables

    metrics = _metrics(coll)
    vs, extra = verdicts(coll, metrics, (probe, _metrics(probe)) if probe is not None else None)
    runs = coll.runs
    probe_arg = f" --probe-experiment {probe.experiment}" if probe is not None else ""
    parts = [f"# Reproduction: {coll.experiment}", "",
             "Generated by `grass reproduction "
             f"{coll.experiment} --runs-dir {coll.runs_dir.name}{probe_arg}` from the committed result files alone; "
             "do not edit above the Discussion heading.", "",
             f"{len(runs)} {'' if coll.include_unfinished else 'finished '}run(s): " + ", ".join(
                 f"{k} x{n}" for k, n in runs.apply(method_key, axis=1).value_counts().sort_index().items()) + ".",
             *(["", "**Preview** (--include-unfinished): unfinished runs count with what they have logged so "
                    "far; nothing here is evidence."] if coll.include_unfinished else []),
             *(["", coll.footnote()] if coll.footnote() else []),
             *(["", f"Claim (a) from `{probe.experiment}`: {len(probe.runs)} "
                    f"{'' if probe.include_unfinished else 'finished '}run(s) ({_budget_line(probe)})."]
               + (["", probe.footnote()] if probe.footnote() else []) if probe is not None else []),
             "", "## Verdicts", "",
             "| claim | verdict | numbers | why |", "|:--|:--|:--|:--|"]
    parts += [f"| {v.claim} | **{v.verdict}** | {v.numbers} | {v.reason} |" for v in vs]
    parts += ["", "A paired difference whose 95% interval over seeds (mean ± t(0.975, n-1) standard errors, at "
              "least two) contains zero is inconclusive. Held-out loss: lower is better.", "", "## Figures", ""]
    parts += reproduction_figures(coll, metrics, extra, fig_dir) or ["(no per-step held-out loss or MGN recorded yet)"]
    parts += ["", "## Paired differences per seed", ""]
    rows = [[p.task, f"{p.a} - {p.b}", p.metric, str(p.n), ", ".join(f"{d:+.4f}" for d in p.diffs)]
            for p in extra["paired"] if p.n]
    parts.append(to_markdown(Table("paired_seeds", "Per-seed differences", ["Task", "Pair", "Metric", "n",
                                                                            "per seed"], rows, "lllrl"))
                 if rows else "(no paired runs yet)")
    if extra.get("divergence"):
        parts += ["", "## Adaptive vs static draws", "",
                  "| seed | draws that differ | draws | largest probability change after the probe (adaptive) |",
                  "|--:|--:|--:|--:|"]
        parts += [f"| {s} | {d} | {n} | {p:.4f} |" for s, d, n, p in extra["divergence"]]
    if extra.get("probe_check"):
        parts += ["", f"## Probe profiles: {probe.experiment} beside {coll.experiment}", "",
                  f"Spearman rank correlation between the probe MGN profile of {coll.experiment}'s GRASS run and "
                  f"{probe.experiment}'s of the same task and seed (same model, batches and probe; they may differ "
                  "in precision, see above).", "",
                  "| task | seed | Spearman | largest difference of MGN / mean |", "|:--|--:|--:|--:|"]
        parts += [f"| {t} | {s} | {r:.3f} | {d:.4f} |" for t, s, r, d in extra["probe_check"]]
    parts += ["", "## Tables", ""]
    parts += [to_markdown(t) for t in build_tables(coll)]
    parts += [to_markdown(projection_table(["full", "lora", "lisa", "grass"]))]
    return "\n".join(parts) + "\n"


def _budget_line(coll: Collection) -> str:
    """Steps, batch, sequence length and precision of a collection's runs, e.g. ``9 steps, 4 x 256, fp32``."""
    r = coll.runs
    parts = [f"{', '.join(sorted({str(v) for v in r[c].dropna()}))}{unit}" for c, unit in
             (("cfg.train.max_steps", " steps"), ("cfg.train.batch_size", " x"), ("cfg.train.seq_len", " tokens"),
              ("train/precision", "")) if c in r]
    return ", ".join(parts).replace(" x, ", " x ")


def write_reproduction(experiment: str, runs_dir: str | None, out: str | Path,
                       include_unfinished: bool = False, probe_experiment: str | None = None) -> Path:
    """Write the document (atomically), keeping the discussion of an existing one.

    ``include_unfinished`` makes a preview from runs still in progress (the document says so).
    ``probe_experiment``: take claim (a)'s probe profiles from this experiment (e.g. ``cpu_probe``).

    Raises:
        GrassError: no runs of ``experiment`` (or ``probe_experiment``) under ``runs_dir``.
    """
    from grass.results import atomic_write_text

    coll = collect(experiment, runs_dir, include_unfinished=include_unfinished)
    probe = collect(probe_experiment, runs_dir, include_unfinished=include_unfinished) if probe_experiment else None
    if probe is not None and set(probe.runs["model"]) != set(coll.runs["model"]):
        raise GrassError(f"--probe-experiment {probe_experiment} ran {', '.join(sorted(set(probe.runs['model'])))} and "
                         f"{experiment} ran {', '.join(sorted(set(coll.runs['model'])))}: claim (a) must be decided on "
                         f"the same model; name a probe experiment of that model")
    out = Path(out)
    discussion = f"{DISCUSSION}\n\n(A person writes the discussion here; it is kept when the document is regenerated.)\n"
    if out.is_file() and DISCUSSION in out.read_text():
        discussion = DISCUSSION + out.read_text().split(DISCUSSION, 1)[1]
    atomic_write_text(out, build(coll, out.parent / "figures", probe) + "\n" + discussion)
    return out


def _cmd(args) -> int:
    print(f"wrote {write_reproduction(args.experiment, args.runs_dir, args.out, args.include_unfinished, args.probe_experiment)}")
    return 0


def add_commands(sub) -> None:
    """Register ``grass reproduction`` on the CLI."""
    p = sub.add_parser("reproduction", help="write docs/reproduction.md: evidence and a verdict per claim of the "
                                            "paper, from result files alone")
    p.add_argument("experiment", metavar="EXPERIMENT")
    p.add_argument("--runs-dir", default=None, help="root of run directories (e.g. results)")
    p.add_argument("--out", default="docs/reproduction.md", help="the document (default docs/reproduction.md)")
    p.add_argument("--probe-experiment", metavar="NAME", default=None,
                   help="take claim (a)'s GRASS probe profiles from this experiment (e.g. cpu_probe) instead")
    p.add_argument("--include-unfinished", action="store_true",
                   help="a preview that also uses runs still in progress (marked as such in the document)")
    p.set_defaults(func=_cmd)
