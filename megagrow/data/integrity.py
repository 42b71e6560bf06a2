"""Shard integrity while training: every shard's SHA-256 checked against the manifest in the background.

Opening a dataset checks what is cheap (presence, sizes, schema, counts: :meth:`ShardedCorpus.open`); a shard
whose bytes changed but not its size passed that, and training then read garbage or crashed deep in the loader
(a 67-line ``IndexError``). :class:`ShardVerifier` hashes every shard of the splits a run reads, and the tokenizer,
in a daemon thread started when the data is opened (hashlib releases the GIL, so it overlaps the model's set-up
and the first steps rather than delaying them). The trainer asks :meth:`ShardVerifier.problem` before each step
(a flag read) and stops with one line naming the file and the command that re-verifies the dataset; an exception
from the loader first waits for the verdict, so a corrupt shard is reported as such, never as a traceback.
``data.verify: off`` turns it off. Cost measured: benchmarks/results/shard-verify-cost-cpu.json.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from megagrow.data.manifest import MANIFEST_NAME, sha256_file
from megagrow.data.shards import ShardError


class DataCorrupt(ShardError):
    """A file of the dataset does not match its manifest (changed or corrupted after it was built)."""


@dataclass(frozen=True)
class Expected:
    path: Path
    sha256: str


class ShardVerifier:
    """Hashes ``files`` one after another in a daemon thread; the first mismatch (or unreadable file) is kept."""

    def __init__(self, data_dir: Path, files: Sequence[Expected], start: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.files = list(files)
        self.seconds: float | None = None  # how long the whole check took, once done
        self._problem: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="megagrow-shard-verify", daemon=True)
        if start:
            self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            for f in self.files:
                try:
                    actual = sha256_file(f.path)
                except OSError as e:
                    self._problem = self._message(f.path, f"cannot be read ({e})")
                    return
                if actual != f.sha256:
                    self._problem = self._message(
                        f.path, f"does not match {MANIFEST_NAME} (SHA-256 {actual[:12]}..., expected "
                        f"{f.sha256[:12]}...): it changed or was corrupted after the dataset was built")
                    return
        finally:
            self.seconds = time.perf_counter() - t0
            self._done.set()

    def _message(self, path: Path, what: str) -> str:
        try:
            name = path.relative_to(self.data_dir)
        except ValueError:
            name = path
        return (f"data.path={self.data_dir}: {name} {what}. Re-verify the whole dataset with `megagrow-prep inspect "
                f"{self.data_dir} --verify`; then rebuild it (megagrow-prep build) or restore the file")

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def problem(self) -> str | None:
        """The mismatch found so far, or None (does not wait)."""
        return self._problem

    def wait(self, timeout: float | None = None) -> str | None:
        """Wait for the check to finish (at most ``timeout`` seconds) and return its mismatch, or None."""
        self._done.wait(timeout)
        return self._problem

    def raise_if_bad(self) -> None:
        """:class:`DataCorrupt` with the one-line message when a mismatch was found (does not wait)."""
        if self._problem is not None:
            raise DataCorrupt(self._problem)


def corpus_files(corpus) -> list[Expected]:
    """The shards of a :class:`~megagrow.data.shards.ShardedCorpus` split and its tokenizer, with their hashes."""
    files = [Expected(corpus.data_dir / f.path, f.sha256) for f in corpus.files]
    return [*files, Expected(corpus.tokenizer_path, corpus.tokenizer_sha256)]


__all__ = ["DataCorrupt", "Expected", "ShardVerifier", "corpus_files"]
