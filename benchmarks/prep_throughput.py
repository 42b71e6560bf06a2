"""Data preparation and loader throughput on the benchmark corpus.

Measures, on the ~43 MB benchmark corpus (``python -m benchmarks.bench_corpus``) plus the sample corpus
(Wikipedia dump chunk + Shakespeare):

* tokenize+write throughput of ``megagrow-prep`` (docs/s, MB/s, tokens/s) with 1 and 2 workers, against
  raw SentencePiece ``encode`` speed on the same texts in one process (target: >= 80 % per worker,
  near-linear to 2 workers) — without the sentence index, and once with it to show its cost;
* peak RSS of a whole build at 1x and 4x the corpus (4x = every document four times, made distinct so
  deduplication keeps them): it must not grow with the corpus;
* loader tokens/s (GPT packing, seq 128, micro-batch 16) against what the trainer consumes per second
  for gpt-tiny, measured side by side (target: >= 20x).

Each build runs in its own process (``--child``) so its peak RSS is its own.

    python -m benchmarks.prep_throughput --out benchmarks/results/prep-throughput-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import command

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _child(args: argparse.Namespace) -> None:
    """Run one build and print its summary as JSON (peak RSS is read by the parent)."""
    from data_prep.build import BuildSettings, build_dataset

    settings = BuildSettings(tokenizer=Path(args.tokenizer) if args.tokenizer else None, workers=args.workers,
                             val_fraction=0.01, vocab_size=args.vocab, sentence_index=args.sentence_index)
    summary = build_dataset([Path(p) for p in args.inputs], Path(args.build_out), settings, progress=False)
    splits = summary.manifest["splits"]
    print(json.dumps({"timings": summary.timings,
                      "n_docs": sum(s["n_docs"] for s in splits.values()),
                      "n_tokens": sum(s["n_tokens"] for s in splits.values()),
                      # peak RSS of this process and of its largest tokenizer worker (ru_maxrss is in KiB)
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def _build(inputs: list[Path], out: Path, workers: int, tokenizer: Path | None, vocab: int,
           sentence_index: bool = False) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "benchmarks.prep_throughput", "--child", "--workers", str(workers),
           "--build-out", str(out),
           *(["--sentence-index"] if sentence_index else []),
           "--vocab", str(vocab), *(["--tokenizer", str(tokenizer)] if tokenizer else []), "--inputs",
           *map(str, inputs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}  # from any cwd
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _texts(dirs: list[Path]) -> list[str]:
    return [p.read_text(encoding="utf-8") for d in dirs for p in sorted(d.rglob("*.txt"))]


def _raw_encode(texts: list[str], model: Path) -> tuple[float, int]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    t0 = time.perf_counter()
    n = sum(len(ids) for ids in sp.encode(texts))
    return time.perf_counter() - t0, n


def _times4(src: Path, dest: Path) -> Path:
    """Every document four times, each copy made distinct (a first line naming the copy)."""
    if dest.exists():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in src.rglob("*.txt"):
        text = p.read_text(encoding="utf-8")
        for k in range(4):
            q = tmp / f"copy{k}" / p.relative_to(src)
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_text(f"Copy {k} of {p.stem}.\n\n{text}", encoding="utf-8")
    tmp.rename(dest)
    return dest


def _loader_vs_trainer(data_dir: Path, steps: int) -> dict:
    from megagrow.config import load_config
    from megagrow.data.datasets import GPTDataset
    from megagrow.data.loader import GlobalBatchLoader
    from megagrow.data.shards import ShardedCorpus
    from megagrow.distributed.engine import build_engine, init_distributed
    from megagrow.models import build_model

    corpus = ShardedCorpus.open(data_dir, "train")
    loader = GlobalBatchLoader(GPTDataset(corpus, 128), 16, 1, 0, seed=0)
    loader.next_micro_batch()
    t0 = time.perf_counter()
    n_batches = 300
    for _ in range(n_batches):
        loader.next_micro_batch()
    loader_tps = n_batches * 16 * 128 / (time.perf_counter() - t0)

    cfg = load_config(ROOT / "configs/gpt-tiny.yaml", [f"--model.vocab_size={corpus.vocab_size}"])
    init_distributed(cfg)
    engine = build_engine(build_model(cfg.model), cfg, 1)
    layer_map = list(range(cfg.model.n_layers))

    def step() -> None:
        batch = loader.next_micro_batch()
        out = engine(batch, layer_map)
        engine.backward(out.loss)
        engine.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    trainer_tps = steps * 16 * 128 / (time.perf_counter() - t0)
    return {"loader_tokens_per_s": loader_tps, "trainer_tokens_per_s": trainer_tps,
            "loader_over_trainer": loader_tps / trainer_tps}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.prep_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/prep-throughput-cpu.json")
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: <cache>/bench/work)")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--trainer-steps", type=int, default=10)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--build-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", default=None, help=argparse.SUPPRESS)
    p.add_argument("--inputs", nargs="*", default=[], help=argparse.SUPPRESS)
    p.add_argument("--sentence-index", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return

    from benchmarks.bench_corpus import build as build_bench_corpus
    from benchmarks.bench_corpus import cache_dir
    from data_prep.fetch import fetch_sample

    bench = build_bench_corpus()
    sample = fetch_sample()
    work = args.work or cache_dir() / "work"
    work.mkdir(parents=True, exist_ok=True)
    inputs = [bench, sample.wiki_dump, sample.plays_dir]
    corpus_mb = (sum(q.stat().st_size for q in bench.rglob("*.txt")) + sample.wiki_dump.stat().st_size
                 + sum(q.stat().st_size for q in sample.plays_dir.rglob("*"))) / 1e6

    print("building once to train the tokenizer ...", file=sys.stderr)
    first = _build(inputs, work / "ds-tok", 2, None, args.vocab)
    tokenizer = work / "tokenizer.model"
    shutil.copy(work / "ds-tok" / "tokenizer.model", tokenizer)

    runs = {}
    for w in (1, 2):
        print(f"tokenize+write with {w} worker(s) ...", file=sys.stderr)
        r = _build(inputs, work / f"ds-w{w}", w, tokenizer, args.vocab)
        t = r["timings"]["tokenize_write"]
        runs[w] = {"workers": w, "seconds": t, "docs_per_s": r["n_docs"] / t, "tokens_per_s": r["n_tokens"] / t,
                   "mb_per_s": corpus_mb / t, "total_build_s": r["timings"]["total"],
                   "n_docs": r["n_docs"], "n_tokens": r["n_tokens"]}
    print("tokenize+write with the sentence index, 2 workers ...", file=sys.stderr)
    r = _build(inputs, work / "ds-si", 2, tokenizer, args.vocab, sentence_index=True)
    with_si = {"workers": 2, "seconds": r["timings"]["tokenize_write"],
               "tokens_per_s": r["n_tokens"] / r["timings"]["tokenize_write"], "total_build_s": r["timings"]["total"]}
    raw_s, raw_tokens = _raw_encode(_texts([bench]), tokenizer)
    raw_tps = raw_tokens / raw_s
    print("4x corpus for peak RSS ...", file=sys.stderr)
    x4 = _times4(bench, work / "bench-x4")
    rss = {}
    for name, src in (("1x", bench), ("4x", x4)):
        r = _build([src], work / f"ds-rss-{name}", 2, tokenizer, args.vocab)
        rss[name] = {"main_mb": r["peak_rss_mb"], "worker_mb": r["peak_worker_rss_mb"], "n_docs": r["n_docs"]}
    print("loader vs trainer ...", file=sys.stderr)
    lt = _loader_vs_trainer(work / "ds-w2", args.trainer_steps)

    result = {
        "benchmark": "prep_throughput",
        "command": command("benchmarks.prep_throughput"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "corpus_mb": corpus_mb,
        "tokenizer_training_build_s": first["timings"]["total"],
        "tokenize_write": list(runs.values()),
        "tokenize_write_with_sentence_index": with_si,
        "raw_sentencepiece_tokens_per_s": raw_tps,
        "per_worker_vs_raw": runs[1]["tokens_per_s"] / raw_tps,
        "scaling_2_workers": runs[2]["tokens_per_s"] / runs[1]["tokens_per_s"],
        "peak_rss_mb": rss,
        **lt,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
