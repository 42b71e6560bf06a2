"""Shared fixtures. Tests run single-process on CPU (gloo); DeepSpeed uses its CPU accelerator."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "2")
warnings.filterwarnings("ignore", category=FutureWarning)


import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_SUBJECTS = ["the king", "a sailor", "the old queen", "my brother", "the river", "a young poet", "the city"]
_VERBS = ["watches", "remembers", "carries", "sings of", "forgets", "follows", "praises"]
_OBJECTS = ["the northern sea", "a silver crown", "the quiet garden", "an ancient war", "the winter road",
            "a broken sword", "the morning bell"]
_TAILS = ["before the night falls", "with great sorrow", "in the spring", "for many years", "without a word"]


def make_text_corpus(root: Path, n_docs: int = 40, seed: int = 0) -> Path:
    """Plain-text 'books' of templated English sentences: learnable, varied, made up (no licensed text)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for d in range(n_docs):
        paras = []
        for _ in range(rng.randint(4, 8)):
            sents = [f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
                     f"{rng.choice(_TAILS)}." for _ in range(rng.randint(3, 6))]
            paras.append(" ".join(sents))
        (root / f"book_{d:03d}.txt").write_text("\n\n".join(paras) + "\n")
    return root


@pytest.fixture(scope="session")
def text_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset (manifest + Arrow shards + tokenizer) built by data_prep from made-up books."""
    from data_prep.build import BuildSettings, build_dataset

    base = tmp_path_factory.mktemp("corpus")
    books = make_text_corpus(base / "books")
    out = base / "prepared"
    build_dataset([books], out, BuildSettings(vocab_size=400, val_fraction=0.2, min_chars=50, workers=1),
                  progress=False)
    return out
