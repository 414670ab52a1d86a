"""One verdict per claim of the GRASS paper, (a)-(f), from an experiment's result files.

Verdict rule (DESIGN.md section 8): a comparison between two methods is paired by seed (same data
order, same held-out examples, same evaluation items). A mean paired difference within its 95%
interval over seeds (at least two standard errors of the mean) is "inconclusive at this budget";
beyond it the claim is "reproduced" or "not reproduced" by its sign. Held-out loss is the primary
measure (it has far more power than a few hundred accuracy items); accuracy is reported beside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import Collection, device_model
from analysis.run_traces import active_sets, draw_steps, prob_drift, probe_profiles, train_time_s
from analysis.stats import mean_se, paired_t_p, sign_test_p
from analysis.timing import Timing, load_timing

INCONCLUSIVE = "inconclusive at this budget"
TASKS = ("math", "commonsense")  # the reproduction's two tasks, in the order the document shows them


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


@dataclass
class Verdict:
    """One claim's verdict, the numbers it rests on and why."""

    claim: str
    verdict: str
    numbers: str
    reason: str


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats

    return float(stats.spearmanr(x, y).statistic)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def task_claim(profiles: dict[str, list[np.ndarray]], source: str) -> tuple[Verdict, float | None]:
    """(a) layer importance depends on the task: every cross-task rank correlation of the probe MGN
    profiles must lie below every seed-to-seed one within a task.

    ``profiles``: task -> one probe profile per seed; ``source`` prefixes the numbers (the probe
    experiment's name, if another). Returns the verdict and the mean profiles' correlation.
    """
    claim = "(a) layer importance depends on the task"
    tasks = list(profiles)
    if len(tasks) != 2 or not all(len(profiles[t]) >= 2 for t in tasks):
        have = ", ".join(f"{t}: GRASS probe profiles of {_plural(len(profiles[t]), 'seed')}" for t in tasks)
        return Verdict(claim, INCONCLUSIVE, source + (have or "no GRASS probe profiles"),
                       "needs GRASS probe profiles of at least two seeds on each of the two tasks"), None
    mean = {t: np.mean(profiles[t], axis=0) for t in tasks}
    rho = _spearman(mean[tasks[0]], mean[tasks[1]])
    within = [_spearman(x, y) for t in tasks for i, x in enumerate(profiles[t]) for y in profiles[t][i + 1:]]
    across = [_spearman(x, y) for x in profiles[tasks[0]] for y in profiles[tasks[1]]]
    differ = max(across) < min(within)
    return Verdict(claim, "reproduced" if differ else INCONCLUSIVE,
                   f"{source}Spearman rank correlation of the mean probe profiles {rho:.3f} "
                   f"({', '.join(f'{t} {len(profiles[t])} seeds' for t in tasks)}); across tasks "
                   f"{min(across):.3f}..{max(across):.3f}, within a task (seeds) {min(within):.3f}..{max(within):.3f}",
                   "every cross-task correlation is below every seed-to-seed one" if differ else
                   "cross-task and seed-to-seed correlations overlap"), rho


def loss_claim(runs: pd.DataFrame, claim: str, a: str, b: str, task: str) -> tuple[Verdict, list[Paired]]:
    """(b), (c), (d): ``a`` >= ``b`` by paired held-out loss on ``task``, accuracy beside it."""
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


def _draw_schedule(run: pd.Series) -> tuple[int, int, int]:
    """``(steps, probe steps, switch period)`` of a GRASS run, today's defaults where its config
    does not record a field (the collected configs hold what the files hold)."""
    from grass.config import RunConfig, method_config_class

    method = method_config_class("grass")()
    defaults = {"train.max_steps": RunConfig().train.max_steps, "method.probe_steps": method.probe_steps,
                "method.switch_every": method.switch_every}
    return tuple(int(v) if pd.notna(v := run.get(f"cfg.{k}", d)) else int(d) for k, d in defaults.items())


def draw_divergence(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame], task: str) -> list[tuple[int, int, int, float]]:
    """Per seed with both an adaptive and a static GRASS run on ``task``: ``(seed, draws that
    differ, draws, largest probability change after the probe in the adaptive run)``.

    The two runs are compared draw by draw, at the steps of their common draw schedule
    (:func:`analysis.run_traces.draw_steps`); a draw that repeats the previous set still counts.
    Claim (c) tests nothing where the two runs of every seed drew the same active sets.
    """
    div = []
    sel = runs[runs["task"] == task]
    for seed in sorted(set(sel["seed"])):
        ad = sel[(sel["_key"] == "grass") & (sel["seed"] == seed)]
        st = sel[(sel["_key"] == "grass*") & (sel["seed"] == seed)]
        if not (len(ad) and len(st) and ad["run_id"].iloc[0] in metrics and st["run_id"].iloc[0] in metrics):
            continue
        a, s = ad.iloc[0], st.iloc[0]
        schedule = _draw_schedule(a)
        if _draw_schedule(s) != schedule:
            continue  # not a pair: the two runs draw at different steps
        sa, ss = active_sets(metrics[a["run_id"]]), active_sets(metrics[s["run_id"]])
        steps = [t for t in draw_steps(*schedule) if t in sa and t in ss]
        differ = sum(sa[t] != ss[t] for t in steps)
        div.append((int(seed), differ, len(steps), prob_drift(metrics[a["run_id"]])))
    return div


def memory_claim(runs: pd.DataFrame, task: str) -> Verdict:
    """(e) GRASS's memory below LISA's and LoRA-level: the memory planner at the paper's setting
    (a CPU cannot show it: host and device are one memory), and at these runs' own configs beside it."""
    from analysis.projection import PAPER_SETTING, planned_gpu_gib
    from grass.memory.model import predict

    s = PAPER_SETTING
    pred = {m: predict(s["model"], m, precision=s["precision"], seq_len=s["seq_len"], batch=s["batch"],
                       grad_ckpt=s["grad_ckpt"]).total for m in ("full", "lora", "lisa", "grass")}
    below_lisa, lora_level = pred["grass"] < pred["lisa"], pred["grass"] <= 1.1 * pred["lora"]
    sel = runs[runs["task"] == task]
    ours = planned_gpu_gib(sel)["total"].groupby(sel["_key"]).mean().dropna()
    ours_text = (f"; at these runs' configs ({task}): GRASS {ours['grass'] / ours['lisa']:.2f}x LISA"
                 if {"grass", "lisa"} <= set(ours.index) else "")
    return Verdict("(e) GRASS's memory below LISA's and LoRA-level",
                   "reproduced (planner)" if below_lisa and lora_level else "not reproduced (planner)",
                   f"LLaMA2-7B, seq 1024 x 4, bf16: GRASS {pred['grass'] / 2**30:.2f} GiB = "
                   f"{pred['grass'] / pred['lisa']:.2f}x LISA, {pred['grass'] / pred['lora']:.2f}x LoRA, "
                   f"{pred['grass'] / pred['full']:.2f}x full (paper: 0.86x LISA, 0.37x full){ours_text}",
                   "predicted by the memory planner, not measured on a GPU (CPU accounting cannot show "
                   "offloading); LoRA-level taken as within 10% of LoRA")


def relative_time(runs: pd.DataFrame, task: str, metric: str) -> tuple[Paired, int]:
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


def _grid_times(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame], task: str) -> list[tuple[Paired, str]]:
    """The grid's GRASS / LISA - 1 of both times, paired by seed on one kind of device."""
    runs = runs.copy()
    steps = runs["cfg.train.max_steps"] if "cfg.train.max_steps" in runs else pd.Series(np.nan, index=runs.index)
    runs["_train_time_s"] = [np.nan if pd.isna(n) or (t := train_time_s(metrics.get(rid), int(n))) is None else t
                             for rid, n in zip(runs["run_id"], steps)]
    out = []
    for metric, label in (("speed/step_time_s_median", "median step time (probe left out)"),
                          ("_train_time_s", "training time of all steps (probe included)")):
        rel, unmatched = relative_time(runs, task, metric)
        apart = (f"; {_plural(unmatched, 'seed')} left out: GRASS and LISA did not run on one known device"
                 if unmatched else "")
        out.append((rel, _relative_text(rel, label, "seed") + apart))
    return out


def _relative_text(rel: Paired, label: str, unit: str) -> str:
    """``label: mean ± s.e. over n <unit>s (95% interval ...)`` of a relative difference."""
    if rel.n < 2:
        return f"{label}: {_plural(rel.n, 'paired ' + unit)}"
    return (f"{label}: {100 * rel.mean:+.1f}% ± {100 * rel.se:.1f}% s.e. over {_plural(rel.n, unit)} (95% interval "
            f"{100 * (rel.mean - rel.margin):+.1f}% to {100 * (rel.mean + rel.margin):+.1f}%)")


def time_claim(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame], task: str, timing: Timing | None = None) -> Verdict:
    """(f) MGN costs at most ~3% step time.

    MGN costs in two places: the probe (steps that run every block's backward and update nothing,
    inside the same step budget) and the per-step RMS of the active layers. The median step time
    leaves the probe out and sees only the second; the training time of the whole step budget sees
    both. Each is GRASS / LISA - 1, and the claim needs both to hold. With ``timing`` (paired
    benchmark rounds, :mod:`analysis.timing`) the verdict rests on those rounds and the grid's
    figures are shown beside them; without it, on the grid's runs paired by seed, only where both
    ran on one kind of device (CPUs differ several-fold).
    """
    grid = _grid_times(runs, metrics, task)
    if timing is not None:
        labels = ("median step time (probe left out)", f"training time of {timing.steps} steps (probe included)")
        measures = []
        for diffs, label in zip((timing.step, timing.budget), labels):
            rel = Paired("grass", "lisa", "time", task, list(range(len(diffs))), diffs)  # paired by round
            measures.append((rel, _relative_text(rel, label, "round")))
        numbers = (f"paired benchmark, lisa vs {timing.grass_key} ({', '.join(Path(f).name for f in timing.files)}): "
                   + "; ".join(text for _, text in measures) + ". Grid wall times, not used: "
                   + "; ".join(text for _, text in grid))
        source = "paired benchmark rounds (scripts/benchmark.py at this experiment's config, alternating order)"
    else:
        measures = grid
        numbers = "; ".join(text for _, text in grid)
        source = "wall time of runs on a shared CPU"
    rels = [rel for rel, _ in measures]
    if any(r.n >= 2 and r.mean - r.margin > 0.03 for r in rels):
        verdict = "not reproduced"
    elif all(r.n >= 2 and r.mean + r.margin <= 0.03 for r in rels):
        verdict = "reproduced"
    else:
        verdict = INCONCLUSIVE
    if verdict == "not reproduced":
        reason = f"{source}; an interval lies wholly above 3%"
    elif verdict == "reproduced" or all(r.n >= 2 for r in rels):
        reason = f"{source}; each interval's upper end is compared with 3%, and both must hold"
    else:
        reason = ("needs at least two seeds with both GRASS and LISA on the same kind of device, every step "
                  "logged (train.log_every 1) for the training time, or paired benchmark rounds (--timing)")
    return Verdict("(f) MGN costs at most ~3% step time", verdict, "GRASS / LISA - 1, " + numbers, reason)


def verdicts(coll: Collection, metrics: dict[str, pd.DataFrame],
             probe: tuple[Collection, dict[str, pd.DataFrame]] | None = None,
             timing: list[str] | None = None) -> tuple[list[Verdict], dict]:
    """One :class:`Verdict` per claim (a)-(f) and the supporting figures (for the document).

    ``probe``: another experiment's runs and metrics (e.g. ``cpu_probe``) to take claim (a)'s
    profiles from instead of ``coll``'s GRASS runs; they are then compared with ``coll``'s
    profiles of the same task and seed (``extra["probe_check"]``). ``timing``: benchmark JSON files
    (:mod:`analysis.timing`) that claim (f) rests on instead of the grid's wall times.
    """
    runs = coll.runs.copy()
    runs["_key"] = runs.apply(method_key, axis=1)
    tasks = run_tasks = [t for t in TASKS if t in set(runs["task"])]
    # Claims (b)-(f) are decided on the first task (arithmetic: the one the seeds were planned for);
    # the others' paired differences stand beside the verdict as supporting evidence.
    main_task = tasks[0] if tasks else "math"
    extra: dict = {"paired": [], "main_task": main_task, "tasks": run_tasks}

    # (a): probe MGN profiles by task, one per seed, from the probe experiment if one is named.
    own = probe_profiles(runs, metrics)
    by_seed = own
    if probe is not None:
        by_seed = probe_profiles(probe[0].runs, probe[1])
        tasks = [t for t in TASKS if t in by_seed] or tasks
        extra["probe_check"] = [(t, s, _spearman(own[t][s], p), float(np.max(np.abs(own[t][s] - p))))
                                for t, ps in by_seed.items() for s, p in sorted(ps.items()) if s in own.get(t, {})]
    extra["profiles"] = {t: list(by_seed.get(t, {}).values()) for t in tasks}
    extra["profiles_from"] = probe[0].experiment if probe is not None else coll.experiment
    task_verdict, rho = task_claim(extra["profiles"], f"{probe[0].experiment}: " if probe is not None else "")
    if rho is not None:
        extra["rho"] = rho
    out = [task_verdict]

    extra["divergence"] = {t: draw_divergence(runs, metrics, t) for t in run_tasks}
    # (b) GRASS >= LISA, (c) adaptive >= static, (d) GRASS >= LoRA: paired held-out loss.
    for claim, a, b in (("(b) GRASS >= LISA at an equal budget", "grass", "lisa"),
                        ("(c) adaptive >= static importance (GRASS*)", "grass", "grass*"),
                        ("(d) GRASS >= LoRA", "grass", "lora")):
        v, ps = loss_claim(runs, claim, a, b, main_task)
        extra["paired"] += ps
        for task in run_tasks[1:]:
            _, beside = loss_claim(runs, claim, a, b, task)
            extra["paired"] += beside
            if any(p.n for p in beside):
                texts = "; ".join(p.text(4 if p.metric.startswith("loss") else 2) for p in beside if p.n)
                div = extra["divergence"][task]
                same = b == "grass*" and div and all(d[1] == 0 for d in div)
                texts += f" (on {task} the adaptive and static runs drew the same active sets)" if same else ""
                v = Verdict(v.claim, v.verdict, f"{v.numbers}. Beside it, not deciding: {texts}", v.reason)
        out.append(v)
    div = extra["divergence"].get(main_task)
    if div and all(d[1] == 0 for d in div):
        c = out[2]
        out[2] = Verdict(c.claim, INCONCLUSIVE, c.numbers,
                         "the adaptive and static runs of every seed drew exactly the same active sets, so "
                         "they trained identically: a tie here is not a finding")

    out.append(memory_claim(runs, main_task))
    on_task = runs[runs["task"] == main_task]
    out.append(time_claim(runs, metrics, main_task, load_timing(timing, on_task[on_task["_key"] == "lisa"],
                                                                on_task[on_task["_key"] == "grass"]) if timing else None))
    return out, extra
