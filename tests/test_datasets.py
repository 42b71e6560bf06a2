"""Token stream windows, GPT packing, BERT dynamic masking, synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from megagrow.data import (
    IGNORE_INDEX,
    BERTDataset,
    GPTDataset,
    InMemoryCorpus,
    SpecialTokens,
    SyntheticImageDataset,
    TokenStream,
)

SPECIAL = SpecialTokens(pad=0, unk=1, cls=2, sep=3, mask=4, eos=5)
VOCAB = 1000


def random_corpus(n_docs: int, seed: int = 0, max_len: int = 40, unk_rate: float = 0.0) -> InMemoryCorpus:
    """Documents of random non-special tokens (lengths 0..max_len), optionally sprinkled with UNK."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        doc = rng.integers(6, VOCAB, size=int(rng.integers(0, max_len + 1)))
        doc[rng.random(doc.size) < unk_rate] = SPECIAL.unk
        docs.append(doc)
    return InMemoryCorpus(docs, SPECIAL, VOCAB)


def brute_force_stream(corpus: InMemoryCorpus, sep: int) -> np.ndarray:
    n = len(corpus.doc_lengths)
    return np.concatenate([np.append(corpus.doc(i).astype(np.int64), sep) for i in range(n)])


# --- TokenStream -------------------------------------------------------------------------------


def test_stream_windows_match_brute_force_concatenation():
    corpus = random_corpus(60, seed=1)
    assert (corpus.doc_lengths == 0).any(), "the fixture should include an empty document"
    stream = TokenStream(corpus, SPECIAL.eos)
    flat = brute_force_stream(corpus, SPECIAL.eos)
    assert len(stream) == flat.size == int(corpus.doc_lengths.sum()) + 60
    np.testing.assert_array_equal(stream.read(0, len(stream)), flat)
    rng = np.random.default_rng(2)
    for _ in range(300):
        start = int(rng.integers(0, len(stream)))
        length = int(rng.integers(0, min(120, len(stream) - start) + 1))
        window = stream.read(start, length)
        assert window.dtype == np.int64
        np.testing.assert_array_equal(window, flat[start : start + length])


def test_stream_separators_sit_after_each_document():
    corpus = InMemoryCorpus([[10, 11], [], [12, 13, 14]], SPECIAL, VOCAB)
    stream = TokenStream(corpus, SPECIAL.sep)
    np.testing.assert_array_equal(stream.read(0, len(stream)), [10, 11, 3, 3, 12, 13, 14, 3])
    np.testing.assert_array_equal(stream.read(1, 4), [11, 3, 3, 12])
    np.testing.assert_array_equal(stream.read(2, 1), [3])
    assert stream.read(8, 0).size == 0


def test_stream_rejects_bad_windows_and_separator():
    stream = TokenStream(InMemoryCorpus([[10, 11]], SPECIAL, VOCAB), SPECIAL.eos)
    with pytest.raises(IndexError, match=r"\[2, 4\) is outside the stream \[0, 3\)"):
        stream.read(2, 2)
    with pytest.raises(IndexError):
        stream.read(-1, 1)
    with pytest.raises(ValueError, match="separator_id=1000"):
        TokenStream(InMemoryCorpus([[10]], SPECIAL, VOCAB), VOCAB)


# --- GPTDataset --------------------------------------------------------------------------------


def test_gpt_samples_are_shifted_windows_of_the_eos_stream():
    corpus = random_corpus(30, seed=3)
    flat = brute_force_stream(corpus, SPECIAL.eos)
    ds = GPTDataset(corpus, seq_len=16)
    assert len(ds) == (flat.size - 1) // 16
    for i in (0, 1, len(ds) // 2, len(ds) - 1):
        s = ds.get(i, key=123)
        assert s["input_ids"].dtype == s["labels"].dtype == np.int64
        np.testing.assert_array_equal(s["input_ids"], flat[i * 16 : i * 16 + 16])
        np.testing.assert_array_equal(s["labels"], flat[i * 16 + 1 : i * 16 + 17])
    np.testing.assert_array_equal(ds.get(3, key=0)["input_ids"], ds.get(3, key=99)["input_ids"])
    with pytest.raises(IndexError):
        ds.get(len(ds), key=0)


def test_gpt_too_small_corpus_is_a_clear_error():
    corpus = InMemoryCorpus([[10, 11, 12]], SPECIAL, VOCAB)  # 4 stream tokens
    assert len(GPTDataset(corpus, seq_len=3)) == 1
    with pytest.raises(ValueError, match=r"has 4 tokens .* seq_len=4 needs at least 5"):
        GPTDataset(corpus, seq_len=4)


def test_fingerprint_depends_on_data_and_parameters():
    a, b = random_corpus(20, seed=4), random_corpus(20, seed=5)
    assert GPTDataset(a, 8).fingerprint() == GPTDataset(random_corpus(20, seed=4), 8).fingerprint()
    assert GPTDataset(a, 8).fingerprint() != GPTDataset(b, 8).fingerprint()
    assert GPTDataset(a, 8).fingerprint() != GPTDataset(a, 9).fingerprint()
    assert BERTDataset(a, 8, seed=0).fingerprint() != BERTDataset(a, 8, seed=1).fingerprint()


# --- BERTDataset -------------------------------------------------------------------------------


def test_bert_layout_without_masking_matches_the_sep_stream():
    corpus = random_corpus(30, seed=6)
    flat = brute_force_stream(corpus, SPECIAL.sep)
    ds = BERTDataset(corpus, seq_len=12, seed=0)
    assert len(ds) == flat.size // 10
    for i in (0, 7, len(ds) - 1):
        s = ds.get(i, key=i)
        restored = np.where(s["labels"] == IGNORE_INDEX, s["input_ids"], s["labels"])
        np.testing.assert_array_equal(restored[1:-1], flat[i * 10 : i * 10 + 10])
        assert restored[0] == SPECIAL.cls and restored[-1] == SPECIAL.sep
        np.testing.assert_array_equal(s["token_type_ids"], np.zeros(12))
        assert all(v.dtype == np.int64 and v.shape == (12,) for v in s.values())


def test_bert_mask_statistics():
    """Exact mask counts per sample; 80/10/10 split within 5 binomial std (cf. test_masking_stats)."""
    corpus = random_corpus(1000, seed=7, max_len=80, unk_rate=0.05)
    ds = BERTDataset(corpus, seq_len=64, seed=11)
    special = np.array(SPECIAL.ids())
    n_normal = VOCAB - len(special)
    chosen = as_mask = as_random = unchanged = 0
    for i in range(len(ds)):
        s = ds.get(i, key=1000 + i)
        original = np.where(s["labels"] == IGNORE_INDEX, s["input_ids"], s["labels"])
        n_candidates = int((~np.isin(original, special)).sum())
        masked = s["labels"] != IGNORE_INDEX
        assert masked.sum() == max(1, int(0.15 * n_candidates + 0.5))
        assert not np.isin(original[masked], special).any(), "a special token was masked"
        ids, labels = s["input_ids"][masked], s["labels"][masked]
        np.testing.assert_array_equal(s["input_ids"][~masked], original[~masked])
        chosen += ids.size
        as_mask += int((ids == SPECIAL.mask).sum())
        replaced = (ids != SPECIAL.mask) & (ids != labels)
        as_random += int(replaced.sum())
        unchanged += int((ids == labels).sum())
        assert not np.isin(ids[replaced], special).any() and (ids < VOCAB).all()
    assert chosen > 5000
    # A random replacement equals the original with probability 1 / n_normal.
    p_random_changed = 0.1 * (1 - 1 / n_normal)
    for count, p in ((as_mask, 0.8), (as_random, p_random_changed), (unchanged, 1 - 0.8 - p_random_changed)):
        std = np.sqrt(chosen * p * (1 - p))
        assert abs(count - chosen * p) < 5 * std, (count, chosen, p)


def test_bert_masking_is_reproducible_per_key_and_differs_across_keys():
    corpus = random_corpus(50, seed=8)
    ds = BERTDataset(corpus, seq_len=32, seed=3)
    a, b = ds.get(5, key=42), ds.get(5, key=42)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(
        a["labels"], BERTDataset(corpus, seq_len=32, seed=3).get(5, key=42)["labels"]
    )
    c = ds.get(5, key=43)
    assert not np.array_equal(a["labels"], c["labels"])
    d = BERTDataset(corpus, seq_len=32, seed=4).get(5, key=42)
    assert not np.array_equal(a["labels"], d["labels"])


def test_bert_chunk_of_only_specials_has_no_mask():
    corpus = InMemoryCorpus([[], [], [], [10, 11, 12]], SPECIAL, VOCAB)  # stream: 3 3 3 10 11 12 3
    ds = BERTDataset(corpus, seq_len=5, seed=0)
    assert (ds.get(0, key=0)["labels"] == IGNORE_INDEX).all()
    assert (ds.get(1, key=0)["labels"] != IGNORE_INDEX).sum() == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq_len": 2}, "seq_len must be >= 3"),
        ({"mask_prob": 0.0}, r"mask_prob must be in \(0, 1\]"),
        ({"replace_mask": 0.9, "replace_random": 0.2}, "sum <= 1"),
        ({"seq_len": 10_000}, "needs at least 9998"),
    ],
)
def test_bert_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BERTDataset(random_corpus(5, seed=9), **{"seq_len": 16, **kwargs})


# --- SyntheticImageDataset ---------------------------------------------------------------------


def test_synthetic_images_shapes_labels_and_determinism():
    ds = SyntheticImageDataset(num_classes=5, image_size=16, in_chans=3, n_samples=20, seed=1)
    assert len(ds) == 20
    s = ds.get(7, key=100)
    assert s["images"].shape == (3, 16, 16) and s["images"].dtype == np.float32
    assert s["labels"].shape == () and s["labels"].dtype == np.int64 and int(s["labels"]) == 2
    np.testing.assert_array_equal(s["images"], ds.get(7, key=100)["images"])
    np.testing.assert_array_equal(
        s["images"], SyntheticImageDataset(5, 16, 3, 20, seed=1).get(7, key=100)["images"]
    )
    assert not np.array_equal(s["images"], ds.get(7, key=101)["images"])
    assert not np.array_equal(ds.prototype(0), ds.prototype(1))
    assert abs(float(s["images"].std()) - 1.0) < 0.3
    with pytest.raises(ValueError, match="image_size must be >= 4, got 2"):
        SyntheticImageDataset(5, 2, 3, 20)
