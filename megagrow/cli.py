"""``megagrow`` command line: thin wrappers over the library.

    megagrow train CONFIG.yaml [--section.key=value ...]      (megagrow train --help: overrides, include:)
    megagrow config CONFIG.yaml [--section.key=value ...] [--docs] [--deepspeed --world-size N]
    megagrow report RUN_DIR [RUN_DIR ...] [--baseline RUN_DIR] [--out DIR] [--ema A] [--suite]
    megagrow plan show [CONFIG.yaml] [--section.key=value ...] [--json]
    megagrow export CHECKPOINT --to hf OUT [--tokenizer FILE] [--force]
    megagrow eval CHECKPOINT [--data PATH] [--samples N]
    megagrow sample CHECKPOINT --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--seed S]

CHECKPOINT is a checkpoint directory (runs/NAME/checkpoints/step_XXXXXXXX) or a run directory (its newest one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from megagrow.config import Config, ConfigError, config_tree, deepspeed_config, describe, dump_yaml, load_config

CONFIG_HELP = """\
overrides:
  Any config field can be set after the config file as --section.key=value (or --section.key value);
  overrides are applied last, after the file and its includes:
    megagrow train configs/gpt-tiny.yaml --optim.lr=3e-4 --train.max_steps=2000 --data.micro_batch_size=8
    megagrow train configs/bert-tiny.yaml --growth.plan=apollo --growth.stages=1,3,6,12 \\
                   --growth.boundaries=0.05,0.1,0.25     # the stacking map (the default, as plans/apollo.yaml);
                                                         # the paper's: --growth.apollo.layer_map=interpolation
  Lists are comma-separated (brackets optional); booleans true/false. Every field with its type, default
  and meaning: `megagrow config --docs`; the resolved config: `megagrow config CONFIG.yaml [overrides]`.

include:
  A YAML file may name other files to merge underneath it, relative to itself:
    include: [gpt-tiny.yaml, plans/apollo.yaml]     # configs/gpt-tiny-apollo.yaml
  Included files are merged in order (later ones win, recursively per section), then the file's own keys,
  then the overrides. model.size applies a named preset before explicit model fields.

resume:
  Rerunning the same command resumes from the run's newest checkpoint (checkpoint.resume=auto). A resume
  whose config changes the architecture, growth plan or schedule, dataset, sequence length or global batch
  is refused; LR, max_steps, cadence and world-size changes are honoured, logged and recorded in the run's
  config.history.yaml; a few others need checkpoint.allow_changes (docs/usage.md, Checkpoints).
"""


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``--section.key[=value]`` overrides (dotted keys) from the command's own flags."""
    own, overrides = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        key = a[2:].partition("=")[0]
        if a.startswith("--") and "." in key:
            overrides.append(a)
            if "=" not in a and i + 1 < len(argv):
                overrides.append(argv[i + 1])
                i += 1
        else:
            own.append(a)
        i += 1
    return own, overrides


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="megagrow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # DeepSpeed's launcher passes --local_rank=N (before the subcommand); LOCAL_RANK is read from the env.
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model (any launcher: none, torchrun, deepspeed, srun, mpirun)",
                       usage="megagrow train CONFIG.yaml [--section.key=value ...]",
                       description="Train (or resume) the run <run.out_dir>/<run.name> described by CONFIG.yaml; "
                       "the same command under torchrun, deepspeed, srun or mpirun trains on several ranks.",
                       epilog=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", help="YAML config file (see configs/); run.name defaults to its stem")
    t.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    c = sub.add_parser("config", help="print the resolved config, its documentation, or the DeepSpeed JSON",
                       usage="megagrow config [CONFIG.yaml] [--section.key=value ...] [--docs] [--deepspeed]",
                       epilog=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("config", nargs="?", help="YAML config file; omitted: defaults")
    c.add_argument("--docs", action="store_true", help="list every field with type, default and help")
    c.add_argument("--deepspeed", action="store_true", help="print the generated DeepSpeed JSON")
    c.add_argument("--world-size", type=int, default=1, help="world size for --deepspeed")
    r = sub.add_parser("report", help="time to the baseline's final loss, savings and equal-FLOPs gap (metrics.jsonl)",
                       description="For every run: the FLOPs, tokens and wall time at which its validation loss first "
                       "reaches the baseline's final validation loss L* (interpolated between the two evaluations "
                       "that bracket it), the savings 1 - x_run / x_baseline_total, and the equal-FLOPs gap (final "
                       "val loss - the baseline's at the run's total FLOPs). Prints a table; --out also writes "
                       "report.json, report.md and PNG plots.")
    r.add_argument("runs", nargs="+", help="run directories (the baseline may be among them or not)")
    r.add_argument("--baseline", default=None,
                   help="the baseline run directory; default: the first run (with --suite: the best sweep run)")
    r.add_argument("--out", default=None, help="write report.json, report.md and the plots into this directory")
    r.add_argument("--ema", type=float, default=None,
                   help="smooth every curve with an EMA of this factor in [0, 1) before finding crossings "
                        "(default: raw evaluation points, see docs)")
    r.add_argument("--allow-mismatch", action="store_true",
                   help="report runs whose task or evaluation set differs from the baseline's (refused by default)")
    r.add_argument("--step-costs", default=None, metavar="FILE",
                   help="also price each run's steps at the step times of FILE (benchmarks/phase_cost.py's result): "
                        "the wall saving a quiet machine would show, evaluation excluded (megagrow.step_costs)")
    r.add_argument("--step-costs-allocator", default="tcmalloc",
                   help="which allocator's rows of --step-costs to use (default tcmalloc)")
    r.add_argument("--lag-steps", type=int, default=200,
                   help="diagnosis: the equal-FLOPs gap this many steps after each phase change (default 200)")
    r.add_argument("--suite", action="store_true",
                   help="the runs are an acceleration suite's (benchmarks/acceleration/run.py; each run directory's "
                        "run.json names its group): also its summary, report.json's \"suite\" (the LR sweep, seed "
                        "bands, token budget, quiet wall times, credibility check), as run.py writes it")
    pl = sub.add_parser("plan", help="inspect a growth plan without training")
    pl_sub = pl.add_subparsers(dest="plan_command", required=True)
    ps = pl_sub.add_parser("show", help="phases, depth pmfs, LR and expected FLOPs vs scratch of the config's plan",
                           usage="megagrow plan show [CONFIG.yaml] [--section.key=value ...] [--json]",
                           description="The plan of CONFIG.yaml for the model it names (a plan file alone, e.g. "
                           "configs/plans/apollo.yaml, gets the default model, and says so).",
                           epilog=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ps.add_argument("config", nargs="?", help="YAML config file; omitted: defaults")
    ps.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pt = pl_sub.add_parser(
        "tune", help="pick a growth plan, its growth point and LR for a budget from short probes (trains)",
        usage="megagrow plan tune CONFIG.yaml --out DIR [--plans stackbert:6,stackbert:3] [--points 0.2,0.4,0.6] "
              "[--lrs LR,...] [--lag 300] [--budget FLOPS] [--probe-budget 1.0] "
              "[--section.key=value ...]",
        description="CONFIG.yaml is a scratch config under WSD (optim.schedule=wsd). For every plan (one growth: "
        "PLAN or PLAN:SMALL_LAYERS), LR and growth point, a probe trains the small model to the growth point (one "
        "shared run per plan and LR, forked at each point) and the grown model --lag steps past it; its per-step "
        "gap to scratch there (validation loss minus scratch's at the same step) says how many steps its run needs "
        "to reach scratch's final loss, and so its FLOPs saving. The largest predicted saving wins: DIR/plan.yaml "
        "is its run; DIR/report.md, "
        "probes.json and probes.png say why (docs/usage.md: Tuning a plan).",
        epilog=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    pt.add_argument("config", help="the scratch config (WSD) the plans are probed against")
    pt.add_argument("--out", required=True, help="directory for the probes, plan.yaml and the report")
    pt.add_argument("--plans", default="stackbert:6,stackbert:3",
                    help="comma-separated PLAN[:SMALL_LAYERS] with one growth (default stackbert:6,stackbert:3)")
    pt.add_argument("--points", default="0.2,0.4,0.6",
                    help="growth points: fractions of the run (< 1) or steps (default 0.2,0.4,0.6)")
    pt.add_argument("--lrs", default=None, help="peak LRs to probe (default: the config's optim.lr)")
    pt.add_argument("--lag", type=int, default=300, help="steps each probe trains past its growth (default 300)")
    pt.add_argument("--budget", type=float, default=None,
                    help="scratch's training FLOPs (default: the config's train.max_steps)")
    pt.add_argument("--probe-budget", type=float, default=1.0,
                    help="cap on the probes' FLOPs, in scratch runs (default 1.0)")
    _use_parsers(sub)
    return p


CKPT_HELP = "a checkpoint directory, or a run directory (its newest checkpoint)"


def _use_parsers(sub: argparse._SubParsersAction) -> None:
    """``export``, ``eval`` and ``sample``: a checkpoint as the model in effect at its step (layer map, masks)."""
    e = sub.add_parser("export", help="write a checkpoint as a Hugging Face model directory",
                       usage="megagrow export CHECKPOINT --to hf OUT [--tokenizer FILE] [--force]",
                       description="Write CHECKPOINT's model, at the architecture and layer map in effect at its step, "
                       "as a Hugging Face transformers model (BertForMaskedLM, GPT2LMHeadModel, "
                       "DeiTForImageClassificationWithTeacher or ViTForImageClassification): config.json, "
                       "model.safetensors and, for text models, the run's tokenizer. Written atomically.")
    e.add_argument("checkpoint", help=CKPT_HELP)
    e.add_argument("--to", required=True, choices=["hf"], help="target format (hf: Hugging Face transformers)")
    e.add_argument("out", help="output directory (must not exist unless --force)")
    e.add_argument("--tokenizer", default=None,
                   help="SentencePiece model to write instead of the run's (when its dataset has moved)")
    e.add_argument("--force", action="store_true", help="replace OUT if it exists")
    v = sub.add_parser("eval", help="validation loss and perplexity (text) or accuracy (deit) of a checkpoint",
                       usage="megagrow eval CHECKPOINT [--data PATH] [--samples N] [--micro-batch-size N]",
                       description="Evaluate CHECKPOINT (a plain module on CPU, the layer map in effect at its step) "
                       "on the first N validation samples of its run's dataset (default: data.eval_samples, the set "
                       "its training evaluated; same loss as the logged val_loss) or of another dataset.")
    v.add_argument("checkpoint", help=CKPT_HELP)
    v.add_argument("--data", default=None, help="prepared dataset directory (default: the run's data.path)")
    v.add_argument("--samples", type=int, default=None,
                   help="validation samples (default: the run's data.eval_samples)")
    v.add_argument("--micro-batch-size", type=int, default=None, help="default: the run's data.micro_batch_size")
    v.add_argument("--json", action="store_true", help="print JSON instead of a line")
    g = sub.add_parser("sample", help="generate text with a GPT checkpoint",
                       usage="megagrow sample CHECKPOINT --prompt TEXT [--max-new-tokens N] [--temperature T] "
                       "[--top-k K] [--seed S]",
                       description="Continue --prompt with CHECKPOINT (family gpt), tokenized with its run's "
                       "tokenizer; stops after --max-new-tokens or at [EOS]. Deterministic for a --seed; "
                       "--temperature 0 or --top-k 1 is greedy.")
    g.add_argument("checkpoint", help=CKPT_HELP)
    g.add_argument("--prompt", required=True, help="text to continue (may be empty)")
    g.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate at most (default 50)")
    g.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy (default 1)")
    g.add_argument("--top-k", type=int, default=0, help="sample among the K most likely tokens; 0 = all (default)")
    g.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    g.add_argument("--tokenizer", default=None, help="SentencePiece model instead of the run's")
    g.add_argument("--ignore-eos", action="store_true", help="do not stop at [EOS]")


def _use(args: argparse.Namespace) -> int:
    try:
        if args.command == "export":
            from megagrow.interchange.export import export_hf

            out, cm = export_hf(args.checkpoint, args.out, args.tokenizer, overwrite=args.force)
            print(f"wrote {out}: {cm.describe()}")
        elif args.command == "eval":
            from megagrow.use import evaluate_checkpoint

            r = evaluate_checkpoint(args.checkpoint, args.data, args.samples, args.micro_batch_size)
            if args.json:
                print(json.dumps({"checkpoint": str(r.checkpoint), "step": r.step, "data": r.data_path,
                                  "samples": r.n_samples, "loss": r.loss, "perplexity": r.perplexity,
                                  "accuracy": r.accuracy, "layer_map": list(r.layer_map)}))
            else:
                print(r.line())
        else:
            from megagrow.use import sample_checkpoint

            r = sample_checkpoint(args.checkpoint, args.prompt, args.max_new_tokens, args.temperature, args.top_k,
                                  args.seed, args.tokenizer, stop_at_eos=not args.ignore_eos)
            print(r.text)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"megagrow: error: {e}", file=sys.stderr)
        return 2
    return 0


def _plan_show(cfg: Config, as_json: bool, model_given: bool) -> int:
    from megagrow.planner.show import render_json, render_table, summarize

    try:
        summary = summarize(cfg, model_source="config" if model_given else "defaults")
    except ValueError as e:
        print(f"megagrow: error: {e}", file=sys.stderr)
        return 2
    print(render_json(summary) if as_json else render_table(summary))
    return 0


def _plan_tune(args: argparse.Namespace, overrides: list[str]) -> int:
    from pathlib import Path

    from megagrow.distributed.engine import choose_deepspeed_accelerator

    choose_deepspeed_accelerator()
    warnings.filterwarnings("ignore", category=FutureWarning)
    from megagrow.planner.probes import PlanChoice
    from megagrow.planner.tune import TuneSpec, tune

    try:
        spec = TuneSpec(plans=[PlanChoice.parse(x) for x in args.plans.split(",") if x.strip()],
                        points=[float(x) for x in args.points.split(",") if x.strip()], out=Path(args.out),
                        lrs=[float(x) for x in args.lrs.split(",")] if args.lrs else None, lag=args.lag,
                        probe_budget=args.probe_budget, budget=args.budget)
        report = tune(lambda extra: load_config(args.config, [*overrides, *extra]), spec,
                      log=lambda line: print(line, flush=True))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"megagrow plan tune: error: {e}", file=sys.stderr)
        return 2
    pick = report["pick"]
    print(f"[plan tune] report: {Path(args.out) / 'report.md'}")
    if pick is None:
        print("[plan tune] no probe is ahead of scratch: train scratch")
    else:
        print(f"[plan tune] pick {pick['name']}: {pick['predicted_saving']:.1%} predicted saving; config "
              f"{pick['config']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `megagrow config --docs | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    own, overrides = _split(argv)
    args = _parser().parse_args(own)
    if args.command in ("export", "eval", "sample"):
        if overrides:
            print(f"megagrow {args.command}: error: unexpected arguments {overrides} (config overrides apply to "
                  "train, config and plan show)", file=sys.stderr)
            return 2
        return _use(args)
    if args.command == "report":
        return _report(args.runs, args.baseline, args.out, args.ema, args.lag_steps, args.allow_mismatch,
                       args.step_costs, args.step_costs_allocator, args.suite)
    try:
        if args.command == "config" and args.docs:
            print("\n".join(describe(Config)))
            return 0
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"megagrow: {e}", file=sys.stderr)
        return 2
    if args.command == "plan" and args.plan_command == "tune":
        return _plan_tune(args, overrides)
    if args.command == "plan":
        return _plan_show(cfg, args.json, "model" in config_tree(args.config, overrides))
    if args.command == "config":
        print(json.dumps(deepspeed_config(cfg, args.world_size), indent=2) if args.deepspeed else dump_yaml(cfg))
        return 0
    # Re-executing is for the command itself: called as a library (tests, scripts), the process keeps its own.
    if from_command_line and (code := _allocator(cfg)) is not None:
        return code
    from megagrow.distributed.engine import choose_deepspeed_accelerator

    choose_deepspeed_accelerator()  # before anything imports deepspeed: it fixes its accelerator at import
    warnings.filterwarnings("ignore", category=FutureWarning)
    from megagrow.trainer.faults import EXIT_NONFINITE, EXIT_PEER, NonFiniteStop, RendezvousFailed, peer_failure
    from megagrow.trainer.loop import train

    try:
        result = train(cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"megagrow: error: {e}", file=sys.stderr)
        return 2
    except RendezvousFailed as e:
        print(f"megagrow: error: {e}", file=sys.stderr, flush=True)
        return EXIT_PEER
    except NonFiniteStop as e:
        print(f"megagrow: stopped: {e}; checkpoint of the last good state saved", file=sys.stderr)
        return EXIT_NONFINITE
    except Exception as e:
        why = peer_failure(e, cfg.distributed.timeout_minutes)
        if why is None:
            raise
        print(f"megagrow: error: {why}", file=sys.stderr, flush=True)
        os._exit(EXIT_PEER)  # no atexit/teardown: collectives with the dead peer would block again
    if int(os.environ.get("RANK", "0")) == 0:
        val = f"{result.val_loss:.4f}" if result.val_loss is not None else "n/a"
        tps = f"{result.tokens_per_s:,.0f}" if result.tokens_per_s is not None else "n/a"
        how = "finished"
        if result.stopped_early:
            how = (f"stopped early ({result.stop_reason or 'signal or train.exit_at_step'}), checkpoint saved; the "
                   "same command resumes")
        print(f"[megagrow] {how} at step {result.step}: val_loss {val}, tokens/s {tps} (whole run), "
              f"run dir {result.run_dir}")
    return 0


def _allocator(cfg: Config) -> int | None:
    """``train.allocator``: re-execute this command once with the allocator preloaded (never returns then);
    an exit code where the requested one is missing; None to go on in this process."""
    import torch

    from megagrow.trainer.allocator import plan_exec, reexec

    try:
        new_env, note = plan_exec(cfg.train.allocator, os.environ, on_cpu=not torch.cuda.is_available())
    except ValueError as e:
        print(f"megagrow: error: {e}", file=sys.stderr)
        return 2
    if new_env is not None:
        reexec(new_env, sys.orig_argv[1:])
    os.environ["MEGAGROW_ALLOCATOR_ACTIVE"] = note
    return None


def _report(paths: list[str], baseline: str | None, out: str | None, ema_alpha: float | None,
            lag_steps: int = 200, allow_mismatch: bool = False, step_costs: str | None = None,
            allocator: str = "tcmalloc", suite: bool = False) -> int:
    from pathlib import Path

    from megagrow.report import (
        best_sweep_run,
        build_report,
        format_table,
        load_run,
        run_status,
        suite_summary,
        write_outputs,
    )

    try:
        runs = [load_run(p) for p in paths]
        if suite and baseline is None:
            baseline = str(best_sweep_run(runs, {r.name: run_status(r) for r in runs}).path)
        base_path = Path(baseline or paths[0])
        if all(r.path.resolve() != base_path.resolve() for r in runs):
            runs.insert(0, load_run(base_path))
        report = build_report(runs, base_path.name, ema_alpha, lag_steps, allow_mismatch, step_costs, allocator)
        if suite:  # after build_report, as run.py adds it: report.json's keys in the same order
            base = next(r for r in runs if r.path.resolve() == base_path.resolve())
            report["suite"] = suite_summary(runs, base, {r.name: run_status(r) for r in runs})
        print(f"baseline {report['baseline']}: target L* = {report['target_loss']:.4f} (its final val loss)")
        print(format_table(report))
        if out:
            for f in write_outputs(report, runs, out):
                print(f"wrote {f}")
    except (FileNotFoundError, ValueError) as e:
        print(f"megagrow: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
