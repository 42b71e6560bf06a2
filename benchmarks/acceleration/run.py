"""Run an acceleration suite, resumably, and write its report.

    python -m benchmarks.acceleration gpt             # the whole suite: sweep, seeds, credibility, plans, report
    python -m benchmarks.acceleration gpt --dry-run   # the commands it would run, nothing else
    python -m benchmarks.acceleration gpt --only scratch  # stop after the scratch sweep and its seeds
    python -m benchmarks.acceleration gpt --report-only   # re-make the report from what has finished
    python -m benchmarks.acceleration gpt --retime scratch-lr4e-3 apollo   # re-train alone for wall time
    python -m benchmarks.acceleration gpt --study multilevel-diag  # controlled runs of one question (suites.py)

(from the repository root; ``python -m benchmarks.acceleration.run`` is the same).

A run that finished (``run.json`` says ``done``) is skipped; one that was interrupted resumes from its last
checkpoint (``checkpoint.resume: auto``), so killing the suite loses at most ``checkpoint.every`` steps.
Each run directory (``runs/acceleration-<suite>/<name>/``) gets ``run.json``: the exact command, the git
commit (and whether the tree was dirty), the machine, the thread count, the load average before and after,
the exit code and the duration; the resolved config is the run's ``config.yaml``. The finished runs'
``metrics.jsonl``, ``config.yaml`` and ``run.json`` are copied to ``benchmarks/results/acceleration-<suite>/
runs/``, so the committed results are a valid input of ``megagrow report``.

Runs take ``--threads`` intra-op threads each (default 1) and go ``--jobs`` at a time (default 1) wherever
they do not depend on each other (the sweep's LRs; then the seeds, the credibility check and the plans).
Losses depend on the thread count (float reductions), so a suite keeps one thread count for all its runs;
they do not depend on what else runs. Wall time does: it is only meaningful for runs that had the machine to
themselves (``--jobs 1`` and nothing else running: the load average recorded before and after each run tells).
``--retime NAME...`` trains finished runs again, one at a time, into fresh directories: the losses and FLOPs
come out identical (same thread count), the wall time is the quiet one; ``run.json`` then says ``quiet: true``
(``--jobs 1`` and a 1-minute load average below threads + 0.5 before and after).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.acceleration.suites import STUDIES, SUITES, Study, Suite, lr_tag

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine(threads: int) -> dict[str, object]:
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    import torch

    return {"host": platform.node(), "cpu": cpu or platform.processor(), "cores": os.cpu_count(),
            "threads": threads, "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


@dataclasses.dataclass
class Runner:
    suite: Suite
    runs_dir: Path
    results_dir: Path
    threads: int
    dry_run: bool = False
    jobs: int = 1

    def train_all(self, specs: list[tuple]) -> list[Path]:
        """Train independent runs (argument tuples of :meth:`train`), ``jobs`` at a time; raises the first failure."""
        if self.jobs <= 1 or self.dry_run:
            return [self.train(*spec) for spec in specs]
        with ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(self.train, *spec) for spec in specs]
            return [f.result() for f in futures]

    @property
    def base(self) -> Path:
        return ROOT / "benchmarks" / "acceleration" / "configs" / self.suite.base

    def entry_config(self, name: str, plan_file: str | None) -> Path:
        """The run's config file in the results directory: the suite's base (and the shipped plan) included."""
        cfg_dir = self.results_dir / "configs"
        includes = [os.path.relpath(self.base, cfg_dir)]
        if plan_file:
            includes.append(os.path.relpath(ROOT / "configs" / "plans" / plan_file, cfg_dir))
        text = (f"# {self.suite.name} suite, run {name}: written by benchmarks/acceleration/run.py\n"
                f"include: [{', '.join(includes)}]\n")
        path = cfg_dir / f"{name}.yaml"
        if not self.dry_run:
            cfg_dir.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
        return path

    def command(self, name: str, plan_file: str | None, overrides: list[str]) -> list[str]:
        entry = self.entry_config(name, plan_file)
        return ["megagrow", "train", os.path.relpath(entry, ROOT), f"--run.name={name}",
                f"--run.out_dir={os.path.relpath(self.runs_dir, ROOT)}", *self.suite.extra_overrides, *overrides]

    def status(self, name: str) -> dict | None:
        """The run's ``run.json``: from its run directory, else from the committed results (a fresh clone)."""
        for path in (self.runs_dir / name / "run.json", self.results_dir / "runs" / name / "run.json"):
            if path.is_file():
                return json.loads(path.read_text())
        return None

    def done(self, name: str) -> bool:
        st = self.status(name)
        return bool(st and st.get("status") == "done")

    def finished_dir(self, name: str) -> Path:
        """Where a finished run's metrics are: its run directory, or its published copy in the results."""
        local = self.runs_dir / name
        if (local / "run.json").is_file() and (local / "metrics.jsonl").is_file():
            return local
        return self.results_dir / "runs" / name

    def train(self, name: str, group: str, plan_file: str | None, overrides: list[str], note: str = "",
              stop_at: int | None = None, continues: str | None = None) -> Path:
        """Train one run unless it finished before; returns its run directory. ``stop_at``: a probe, stopped after
        that step of the full run's schedule (``train.exit_at_step``: the schedule is the full run's).
        ``continues``: a finished probe with this run's plan and overrides; a fresh run starts from a copy of its
        run directory (:func:`seed_from_probe`)."""
        run_dir = self.runs_dir / name
        cmd = self.command(name, plan_file, [*overrides, *([f"--train.exit_at_step={stop_at}"] if stop_at else [])])
        if self.done(name):
            print(f"[suite] {name}: done before, skipped", flush=True)
            return self.finished_dir(name)
        print(f"[suite] {name}: {shlex.join(cmd)}", flush=True)
        if self.dry_run:
            return run_dir
        seeded = None
        if continues is not None:
            if (run_dir / "checkpoints").is_dir():
                seeded = (self.status(name) or {}).get("continued_from")  # resuming: seeded on an earlier start
            else:
                seeded = seed_from_probe(self.runs_dir / continues, run_dir)
                print(f"[suite] {name}: continues {continues} from its step {seeded['step']}", flush=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "DS_ACCELERATOR": "cpu",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        meta = {"name": name, "group": group, "note": note, "suite": self.suite.name, "command": shlex.join(cmd),
                "cwd": str(ROOT),
                "stop_at": stop_at,
                **({"continued_from": seeded} if seeded else {}),
                "jobs": self.jobs,
                "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(_git("status", "--porcelain", "--",
                                                                                 "megagrow", "configs")),
                "machine": machine(self.threads), "loadavg_before": os.getloadavg()[0],
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running"}
        _write_json(run_dir / "run.json", meta)
        t0 = time.time()
        full = [sys.executable, "-m", "megagrow.cli", *cmd[1:]]
        with (run_dir / "train.log").open("a") as log:
            rc = subprocess.run(full, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        finished = rc == 0 and _finished(run_dir, stop_at)  # exit 0 also follows SIGTERM (checkpoint, resume later)
        alloc = [ln.split("host allocator: ", 1)[1] for ln in (run_dir / "train.log").read_text().splitlines()
                 if "host allocator: " in ln]
        meta.update(exit_code=rc, duration_s=round(time.time() - t0, 1), loadavg_after=os.getloadavg()[0],
                    allocator=alloc[-1] if alloc else "system (glibc malloc; before train.allocator)",
                    ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    status="done" if finished else "interrupted" if rc == 0 else "failed")
        limit = self.threads + 0.5
        meta["quiet"] = self.jobs == 1 and meta["loadavg_before"] < limit and meta["loadavg_after"] < limit
        _write_json(run_dir / "run.json", meta)
        if not finished:
            tail = "".join((run_dir / "train.log").read_text().splitlines(keepends=True)[-15:])
            raise RuntimeError(f"run {name} {meta['status']} (exit {rc}); run the suite again to resume it; last lines "
                               f"of {run_dir / 'train.log'}:\n{tail}")
        self.publish(name)
        return run_dir

    def retime(self, names: list[str]) -> None:
        """Train finished runs again alone (their group, plan and overrides from run.json) for a quiet wall time."""
        if self.jobs != 1:
            raise SystemExit("--retime measures wall time: use --jobs 1 and keep the machine otherwise idle")
        for name in names:
            st = self.status(name)
            if not st or st.get("status") != "done":
                raise SystemExit(f"--retime {name}: no finished run of that name in {self.runs_dir}")
            old = json.loads(json.dumps(st))
            args = shlex.split(st["command"])[3:]  # megagrow train ENTRY ...
            own = ("--run.name=", "--run.out_dir=", "--train.exit_at_step=")
            overrides = [a for a in args if not a.startswith(own)]
            if self.dry_run:
                print(f"[suite] retime {name}: {st['command']}", flush=True)
                continue
            shutil.rmtree(self.runs_dir / name, ignore_errors=True)  # may be known from the committed results only
            entry = ROOT / shlex.split(st["command"])[2]
            plan_file = _plan_include(entry)
            self.train(name, st["group"], plan_file, [a for a in overrides if a not in self.suite.extra_overrides],
                       st.get("note", ""), st.get("stop_at"))
            new = self.status(name) or {}
            new["previous_timing"] = {k: old.get(k) for k in ("duration_s", "jobs", "loadavg_before", "loadavg_after",
                                                               "git_commit", "started")}
            _write_json(self.runs_dir / name / "run.json", new)
            self.publish(name)

    def publish(self, name: str) -> None:
        """Copy a finished run's metrics, config and run.json into the results directory."""
        src, dst = self.runs_dir / name, self.results_dir / "runs" / name
        if not src.is_dir():  # known only from the committed results: nothing newer to copy
            return
        dst.mkdir(parents=True, exist_ok=True)
        for f in ("metrics.jsonl", "config.yaml", "run.json"):
            if (src / f).is_file():
                shutil.copy2(src / f, dst / f)


def seed_from_probe(probe_dir: Path, run_dir: Path) -> dict:
    """Start ``run_dir`` as a copy of a finished probe's run directory: its checkpoint at the probe's stop step
    (the run resumes from it: ``checkpoint.resume`` auto), its metrics and its log. The probe ran the full run's
    schedule, so the copy is the full run's first ``stop_at`` steps; the resumed command's own fields
    (``run.name``, ``train.exit_at_step``) are neutral to resume (``megagrow.checkpointing.resume``). Returns what
    was copied, for ``run.json``."""
    status = json.loads((probe_dir / "run.json").read_text()) if (probe_dir / "run.json").is_file() else {}
    stop_at = status.get("stop_at")
    if status.get("status") != "done" or not stop_at:
        raise RuntimeError(f"{run_dir.name} continues the probe {probe_dir.name}, which has not finished as a probe "
                           f"({probe_dir / 'run.json'}: status {status.get('status')!r}, stop_at {stop_at!r}): "
                           "train the probe first")
    ckpt = probe_dir / "checkpoints" / f"step_{stop_at:08d}"
    if not (ckpt / "meta.json").is_file():
        raise RuntimeError(f"{run_dir.name} continues the probe {probe_dir.name}: no checkpoint at its stop step "
                           f"{stop_at} ({ckpt}); train it again with checkpoints kept")
    metrics = [ln for ln in (probe_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    if not metrics or json.loads(metrics[-1]).get("step") != stop_at:
        raise RuntimeError(f"{probe_dir / 'metrics.jsonl'}: its last record is not the probe's stop step {stop_at}")
    tmp = run_dir.with_name(run_dir.name + ".seeding")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt, tmp / "checkpoints" / ckpt.name)
    (tmp / "checkpoints" / "latest").write_text(ckpt.name)
    (tmp / "metrics.jsonl").write_text("".join(ln + "\n" for ln in metrics))
    if (probe_dir / "train.log").is_file():
        shutil.copy2(probe_dir / "train.log", tmp / "train.log")
    shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained there yet (no checkpoints): a failed start at most
    tmp.rename(run_dir)
    return {"run": probe_dir.name, "step": stop_at}


def _finished(run_dir: Path, stop_at: int | None = None) -> bool:
    """The run's last metrics record is at its config's train.max_steps (a probe's ``stop_at``) and carries a
    validation loss."""
    try:
        from megagrow.checkpointing.rundir import current_config
    except ImportError:  # a checkout from before config histories: config.yaml is the config in effect
        import yaml

        def current_config(d: Path) -> dict:
            return yaml.safe_load((d / "config.yaml").read_text())

    try:
        max_steps = current_config(run_dir)["train"]["max_steps"]
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    except (OSError, KeyError, IndexError, TypeError, json.JSONDecodeError):
        return False
    return last.get("step") == (stop_at or max_steps) and "val_loss" in last


def _plan_include(entry: Path) -> str | None:
    """The plan file an entry config includes (its second include), or None for scratch."""
    import yaml

    includes = (yaml.safe_load(entry.read_text()) or {}).get("include") or []
    return Path(includes[1]).name if len(includes) > 1 else None


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def final_val_loss(run_dir: Path) -> float:
    from megagrow.report import load_run

    return load_run(run_dir).final_val_loss


def sweep(r: Runner) -> tuple[float, dict[float, float]]:
    """Scratch at every sweep LR; extend by the factor while the best is at an edge. Returns (best LR, table)."""
    s = r.suite
    lrs = sorted(s.sweep_lrs)
    losses: dict[float, float] = {}
    while True:
        todo = [lr for lr in lrs if lr not in losses]
        dirs = r.train_all([(f"scratch-lr{lr_tag(lr)}", "sweep", None, [f"--optim.lr={lr:g}"]) for lr in todo])
        for lr, run_dir in zip(todo, dirs, strict=True):
            losses[lr] = float("nan") if r.dry_run else final_val_loss(run_dir)
        if r.dry_run:
            return lrs[len(lrs) // 2], losses
        best = min(losses, key=lambda x: (losses[x] != losses[x], losses[x]))
        if len(lrs) >= s.max_sweep or lrs[0] < best < lrs[-1]:
            return best, losses
        new = best / s.sweep_factor if best == lrs[0] else best * s.sweep_factor
        print(f"[suite] best LR {best:g} is at the edge of {lrs}: extending to {new:g}", flush=True)
        lrs = sorted({*lrs, new})


def credibility_steps(r: Runner, scratch_dir: Path | None, overrides: list[str]) -> int:
    """Steps of the half-size model that spend the FLOPs the best scratch run spent."""
    from megagrow.config import load_config
    from megagrow.planner.show import summarize

    cfg = load_config(str(r.base), [*r.suite.extra_overrides, *overrides, "--train.max_steps=1"])
    per_step = summarize(cfg).scratch_flops_per_step
    if scratch_dir is None:  # dry run: the expected FLOPs of the full model
        full = summarize(load_config(str(r.base), list(r.suite.extra_overrides)))
        total = full.scratch_flops_per_step * full.max_steps
    else:
        from megagrow.report import load_run

        total = load_run(scratch_dir).points[-1].flops
    return max(1, round(total / per_step))


def half_model_overrides(r: Runner) -> list[str]:
    from megagrow.config import load_config

    m = load_config(str(r.base), list(r.suite.extra_overrides)).model
    return [f"--model.n_layers={m.n_layers // 2}", f"--model.hidden={m.hidden // 2}",
            f"--model.n_heads={m.n_heads // 2}", f"--model.ffn={m.ffn // 2}"]


def run_suite(r: Runner, only: str | None, report_only: bool) -> None:
    s = r.suite
    if not report_only:
        best, table = sweep(r)
        print(f"[suite] scratch sweep: {json.dumps({lr_tag(k): v for k, v in sorted(table.items())})}; "
              f"best {best:g}", flush=True)
        specs: list[tuple] = [(f"scratch-lr{lr_tag(best)}-s{seed}", "seed", None,
                               [f"--optim.lr={best:g}", f"--run.seed={seed}"]) for seed in s.seeds[1:]]
        if s.seed_safer_lr:  # is the best LR robust? the next lower LR of the sweep under the same seeds
            lower = [lr for lr in table if lr < best]
            if lower:
                safer = max(lower)
                specs += [(f"scratch-lr{lr_tag(safer)}-s{seed}", "seed", None,
                           [f"--optim.lr={safer:g}", f"--run.seed={seed}"]) for seed in s.seeds[1:]]
        if only != "scratch":
            half = half_model_overrides(r)
            base_dir = None if r.dry_run else r.finished_dir(f"scratch-lr{lr_tag(best)}")
            steps = credibility_steps(r, base_dir, half)
            plans = [(p.name, "plan", p.plan_file, [f"--optim.lr={best:g}", *p.overrides], p.note) for p in s.plans]
            credibility = [(f"half-lr{lr_tag(best * m)}", "credibility", None,
                            [*half, f"--optim.lr={best * m:g}", f"--train.max_steps={steps}"],
                            f"half width and depth, {steps} steps = the best scratch run's FLOPs")
                           for m in s.credibility_lr_mults]
            # the early plans (the papers' two methods) first, then the (long) credibility runs, then the rest
            early = [x for x in plans if x[0] in s.early_plans]
            specs += [*early, *credibility, *[x for x in plans if x[0] not in s.early_plans]]
        r.train_all(specs)
    if not r.dry_run:
        write_report(r)


def step_cost_file(r: Runner) -> Path | None:
    """The suite's step-cost file where it exists (a suite without one reports logged wall times only)."""
    path = ROOT / r.suite.step_costs if r.suite.step_costs else None
    return path if path is not None and path.is_file() else None


def write_report(r: Runner) -> None:
    """``megagrow report`` over every finished run against the best scratch run, plus the suite summary."""
    from megagrow.report import build_report, load_run, write_outputs

    names = {p.parent.name for base in (r.runs_dir, r.results_dir / "runs") for p in base.glob("*/run.json")}
    finished = sorted(n for n in names if r.done(n))
    for n in finished:
        r.publish(n)
    runs = [load_run(r.results_dir / "runs" / n) for n in finished]
    sweep_runs = [x for x in runs if _group(r, x.name) == "sweep"]
    if not sweep_runs:
        print("[suite] no finished scratch run yet: no report", flush=True)
        return
    baseline = min(sweep_runs, key=lambda x: x.final_val_loss)
    report = build_report(runs, baseline.name, r.suite.report_ema, step_cost_file=step_cost_file(r))
    report["suite"] = suite_summary(r, runs, baseline)
    write_outputs(report, runs, r.results_dir)
    write_commands(r, finished)
    print(f"[suite] report: {r.results_dir / 'report.md'}", flush=True)


def suite_baseline(results_dir: Path):
    """The suite's baseline: its best finished scratch-sweep run (from the committed results)."""
    from megagrow.report import load_run

    sweep = []
    for rj in sorted((results_dir / "runs").glob("*/run.json")):
        st = json.loads(rj.read_text())
        if st.get("group") == "sweep" and st.get("status") == "done":
            sweep.append(load_run(rj.parent))
    if not sweep:
        raise SystemExit(f"no finished scratch-sweep run in {results_dir / 'runs'}: run the suite first")
    return min(sweep, key=lambda x: x.final_val_loss)


def run_study(r: Runner, study: Study, suite_results: Path, report_only: bool) -> None:
    """A study's controlled runs (each one change against a reference run of the suite), at the suite's tuned LR
    unless a run sets its own, then their report against the suite's baseline and the references."""
    baseline = suite_baseline(suite_results)
    best = baseline.config["optim"]["lr"]
    print(f"[study] {study.name}: {study.question}\n[study] baseline {baseline.name} "
          f"(val loss {baseline.final_val_loss:.4f}), LR {best:g}", flush=True)
    specs = [(p.name, "study", p.plan_file, [f"--optim.lr={best:g}", *p.overrides], p.note, p.stop_at, p.continues)
             for p in study.runs]
    if not report_only:  # the full runs of probes after the probes
        r.train_all([s for s in specs if s[-1] is None])
        r.train_all([s for s in specs if s[-1] is not None])
    if r.dry_run:
        return
    from megagrow.report import build_report, load_run, write_outputs

    names = [p.name for p in study.runs if r.done(p.name)]
    for n in names:
        r.publish(n)
    refs = [load_run(suite_results / "runs" / n) for n in study.references
            if (suite_results / "runs" / n / "metrics.jsonl").is_file()]
    runs = [baseline, *refs, *[load_run(r.results_dir / "runs" / n) for n in names]]
    report = build_report(runs, baseline.name, r.suite.report_ema, step_cost_file=step_cost_file(r))
    report["study"] = {"name": study.name, "question": study.question, "baseline_from": str(suite_results),
                       "references": [x.name for x in refs],
                       "runs": {p.name: {"note": p.note, "overrides": list(p.overrides), "stop_at": p.stop_at,
                                         "continues": p.continues, "finished": p.name in names}
                                for p in study.runs}}
    write_outputs(report, runs, r.results_dir)
    write_commands(r, names)
    print(f"[study] report: {r.results_dir / 'report.md'}", flush=True)


def repo_command(command: str, results_dir: Path, cwd: str | None) -> str:
    """A run's command (recorded relative to ``cwd``, the checkout that ran it) as typed from the root of the
    repository that holds ``results_dir``: the two differ when the suite ran from a separate worktree of a fixed
    commit with its results written into the main checkout (``--results-dir ../main/...``). Records without a
    ``cwd`` (older runs) ran from a sibling worktree: a leading ``../NAME/`` is that hop."""
    repo = next((p for p in results_dir.resolve().parents if (p / ".git").exists()), ROOT)
    if not command:
        return command
    args = shlex.split(command)

    def rel(path: str) -> str:
        if cwd is not None:
            return os.path.relpath((Path(cwd) / path).resolve(), repo)
        parts = Path(path).parts
        return str(Path(*parts[2:])) if len(parts) > 2 and parts[0] == ".." else path

    out = [*args[:2], rel(args[2])] if len(args) > 2 else args
    for a in args[3:]:
        out.append(f"--run.out_dir={rel(a.split('=', 1)[1])}" if a.startswith("--run.out_dir=") else a)
    return shlex.join(out)


def write_commands(r: Runner, names: list[str]) -> None:
    """``commands.md``: how the suite was run and every finished run's exact command, commit and machine."""
    lines = [f"# {r.suite.name} suite: the exact commands", "",
             "Prepared data (once): see benchmarks/README.md (python -m benchmarks.bench_corpus, megagrow-prep build "
             "... --vocab-size 2048, megagrow-prep images mnist). The suite, resumable, from the repository root:", "",
             "```sh", f"python -m benchmarks.acceleration {r.suite.name} --threads {r.threads} --jobs 2", "```", "",
             f"Each run, from the repository root with `OMP_NUM_THREADS={r.threads} DS_ACCELERATOR=cpu`:", "",
             "| run | group | command | commit | last invocation s | jobs | load before/after | quiet |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        st = r.status(name) or {}
        commit = (st.get("git_commit") or "")[:10] + (" (dirty)" if st.get("git_dirty") else "")
        command = repo_command(st.get("command", ""), r.results_dir, st.get("cwd"))
        lines.append(f"| {name} | {st.get('group', '')} | `{command}` | {commit} | "
                     f"{st.get('duration_s', '')} | {st.get('jobs', '')} | {st.get('loadavg_before', 0):.1f} / "
                     f"{st.get('loadavg_after', 0):.1f} | {bool(st.get('quiet'))} |")
    m = next(((r.status(n) or {}).get("machine") for n in names if (r.status(n) or {}).get("machine")), None)
    if m:
        lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items())]
    from megagrow.checkpointing.store import atomic_write_text

    atomic_write_text(r.results_dir / "commands.md", "\n".join(lines) + "\n")


def _group(r: Runner, name: str) -> str:
    st = r.status(name) or {}
    return st.get("group", "")


def suite_summary(r: Runner, runs: list, baseline) -> dict:
    """The sweep table, the seed band and the credibility check, for report.json and report.md: megagrow.report's
    (``megagrow report --suite`` computes the same from the published run directories)."""
    from megagrow.report import suite_summary as summary

    return summary(runs, baseline, {x.name: r.status(x.name) or {} for x in runs})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.acceleration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", choices=sorted(SUITES))
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per run (keep one value per suite)")
    p.add_argument("--jobs", type=int, default=1, help="independent runs at a time (wall time needs 1)")
    p.add_argument("--runs-dir", default=None, help="default: runs/acceleration-<suite>")
    p.add_argument("--results-dir", default=None, help="default: benchmarks/results/acceleration-<suite>")
    p.add_argument("--only", choices=["scratch"], default=None, help="stop after the scratch sweep and seeds")
    p.add_argument("--report-only", action="store_true", help="train nothing; report what has finished")
    p.add_argument("--dry-run", action="store_true", help="print the commands; train nothing")
    p.add_argument("--study", default=None, choices=sorted(STUDIES),
                   help="train a study's controlled runs (suites.py STUDIES) and report them against the suite's "
                        "baseline, into benchmarks/results/studies/<study>/")
    p.add_argument("--retime", nargs="+", default=None, metavar="NAME",
                   help="train these finished runs again, alone, for their wall time (then report)")
    a = p.parse_args(argv)
    s = SUITES[a.suite]
    if a.study:
        study = STUDIES[a.study]
        if study.suite != s.name:
            p.error(f"study {study.name} belongs to the {study.suite} suite, not {s.name}")
        suite_results = ROOT / "benchmarks" / "results" / f"acceleration-{s.name}"
        runner = Runner(s, Path(a.runs_dir or ROOT / "runs" / f"study-{study.name}").resolve(),
                        Path(a.results_dir or ROOT / "benchmarks" / "results" / "studies" / study.name).resolve(),
                        a.threads, a.dry_run, a.jobs)
        if a.retime:
            runner.retime(a.retime)
        run_study(runner, study, suite_results, a.report_only or bool(a.retime))
        return 0
    runner = Runner(s, Path(a.runs_dir or ROOT / "runs" / f"acceleration-{s.name}").resolve(),
                    Path(a.results_dir or ROOT / "benchmarks" / "results" / f"acceleration-{s.name}").resolve(),
                    a.threads, a.dry_run, a.jobs)
    if a.retime:
        runner.retime(a.retime)
        if not a.dry_run:
            write_report(runner)
        return 0
    run_suite(runner, a.only, a.report_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
