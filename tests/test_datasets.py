"""Token stream windows, GPT packing, BERT dynamic masking, synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from megagrow.data import (
    IGNORE_INDEX,
    BERTDataset,
    BERTPairDataset,
    GPTDataset,
    InMemoryCorpus,
    MaskingConfig,
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


# --- Whole-word masking ------------------------------------------------------------------------


def word_corpus(n_docs: int, seed: int = 0, max_sentences: int = 8, max_sentence_len: int = 14) -> InMemoryCorpus:
    """Documents of sentences of random non-special tokens, with a sentence index and a word-start table
    (about 60% of the vocabulary starts a word, so words are 1-5 pieces long)."""
    rng = np.random.default_rng(seed)
    docs, starts = [], []
    for _ in range(n_docs):
        lengths = rng.integers(1, max_sentence_len + 1, size=int(rng.integers(1, max_sentences + 1)))
        docs.append(rng.integers(6, VOCAB, size=int(lengths.sum())))
        starts.append(np.concatenate(([0], np.cumsum(lengths)[:-1])))
    word_starts = rng.random(VOCAB) < 0.6
    word_starts[SPECIAL.ids()] = True
    return InMemoryCorpus(docs, SPECIAL, VOCAB, sentence_starts=starts, word_starts=word_starts)


def original_ids(sample: dict[str, np.ndarray]) -> np.ndarray:
    return np.where(sample["labels"] == IGNORE_INDEX, sample["input_ids"], sample["labels"])


def check_replacement_split(chosen: int, as_mask: int, as_random: int, unchanged: int) -> None:
    """80/10/10 within 5 binomial standard deviations (a random draw equals the original w.p. 1/n_normal)."""
    p_random_changed = 0.1 * (1 - 1 / (VOCAB - len(SPECIAL.ids())))
    for count, p in ((as_mask, 0.8), (as_random, p_random_changed), (unchanged, 1 - 0.8 - p_random_changed)):
        std = np.sqrt(chosen * p * (1 - p))
        assert abs(count - chosen * p) < 5 * std, (count, chosen, p)


def replacement_counts(sample: dict[str, np.ndarray]) -> tuple[int, int, int, int]:
    masked = sample["labels"] != IGNORE_INDEX
    ids, labels = sample["input_ids"][masked], sample["labels"][masked]
    as_mask = int((ids == SPECIAL.mask).sum())
    unchanged = int((ids == labels).sum())
    return ids.size, as_mask, ids.size - as_mask - unchanged, unchanged


def test_whole_word_masking_masks_whole_words_at_a_15_percent_token_rate():
    corpus = word_corpus(600, seed=20)
    ds = BERTDataset(corpus, seq_len=64, seed=5, whole_word=True)
    masker = ds.masker
    totals = np.zeros(4, dtype=np.int64)
    n_candidates = n_masked = multi_piece_words = 0
    for i in range(len(ds)):
        s = ds.get(i, key=7 + i)
        original = original_ids(s)
        is_candidate = masker.candidates(original)
        masked = s["labels"] != IGNORE_INDEX
        assert not masked[~is_candidate].any(), "a special token was masked"
        starts, lengths = masker.word_spans(original, is_candidate)
        word_masked = np.add.reduceat(masked.astype(np.int64), starts) if starts.size else np.zeros(0)
        # reduceat sums up to the next word start; a word's span ends earlier only at a non-candidate
        # position, which is never masked, so the sum is the number of masked pieces of the word.
        assert ((word_masked == 0) | (word_masked == lengths)).all(), "a word was partially masked"
        multi_piece_words += int(((word_masked == lengths) & (lengths > 1)).sum())
        budget = masker.budget(int(is_candidate.sum()))
        assert masked.sum() <= budget
        n_candidates += int(is_candidate.sum())
        n_masked += int(masked.sum())
        totals += replacement_counts(s)
    assert multi_piece_words > 500
    assert abs(n_masked / n_candidates - 0.15) < 0.01, n_masked / n_candidates
    check_replacement_split(*totals.tolist())
    # Reproducible per (seed, key); different keys and seeds give different masks.
    a = ds.get(3, key=99)
    np.testing.assert_array_equal(a["labels"], BERTDataset(corpus, 64, seed=5, whole_word=True).get(3, 99)["labels"])
    assert not np.array_equal(a["labels"], ds.get(3, key=100)["labels"])
    assert not np.array_equal(a["labels"], BERTDataset(corpus, 64, seed=6, whole_word=True).get(3, 99)["labels"])


def test_word_spans_break_at_word_starts_and_special_tokens():
    word_starts = np.zeros(VOCAB, dtype=bool)
    word_starts[[10, 20]] = True
    word_starts[SPECIAL.ids()] = True
    corpus = InMemoryCorpus([[10, 11, 12, 20, 13, 3, 14, 15, 10]], SPECIAL, VOCAB, word_starts=word_starts)
    ds = BERTDataset(corpus, seq_len=11, whole_word=True)
    ids = np.array([SPECIAL.cls, 10, 11, 12, 20, 13, SPECIAL.sep, 14, 15, 10, SPECIAL.sep])
    starts, lengths = ds.masker.word_spans(ids, ds.masker.candidates(ids))
    assert starts.tolist() == [1, 4, 7, 9] and lengths.tolist() == [3, 2, 2, 1]


def test_whole_word_masking_without_word_starts_is_a_clear_error():
    with pytest.raises(ValueError, match=r"whole_word_masking=True needs corpus.word_starts\(\)"):
        BERTDataset(random_corpus(10, seed=1), seq_len=16, whole_word=True)
    corpus = word_corpus(20, seed=1)
    assert BERTDataset(corpus, 16).fingerprint() != BERTDataset(corpus, 16, whole_word=True).fingerprint()


# --- BERTPairDataset ---------------------------------------------------------------------------


def split_pair(sample: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """(A, B, number of real tokens) of an unmasked-restored ``[CLS] A [SEP] B [SEP] PAD...`` sample."""
    ids = original_ids(sample)
    seps = np.flatnonzero(ids == SPECIAL.sep)
    assert ids[0] == SPECIAL.cls and seps.size == 2, ids
    n_real = int(seps[1]) + 1
    return ids[1 : seps[0]], ids[seps[0] + 1 : seps[1]], n_real


def find(haystack: np.ndarray, needle: np.ndarray) -> list[int]:
    """Start offsets of ``needle`` in ``haystack``."""
    if needle.size > haystack.size:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(haystack, needle.size)
    return np.flatnonzero((windows == needle).all(axis=1)).tolist()


def test_pair_structure_token_types_attention_and_consecutive_sentences():
    from megagrow.data.bert_pairs import sentence_bounds

    corpus = word_corpus(300, seed=30)
    ds = BERTPairDataset(corpus, seq_len=48, seed=2)
    max_tokens = 45
    untruncated = 0
    for i in range(len(ds)):
        s = ds.get(i, key=i)
        assert set(s) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
        assert all(v.shape == (48,) and v.dtype == np.int64 for v in s.values())
        a, b, n_real = split_pair(s)
        assert a.size >= 1 and b.size >= 1 and n_real == a.size + b.size + 3 <= 48
        ids = original_ids(s)
        assert (ids[n_real:] == SPECIAL.pad).all() and (s["input_ids"][n_real:] == SPECIAL.pad).all()
        np.testing.assert_array_equal(s["attention_mask"], np.arange(48) < n_real)
        expected_types = np.zeros(48, dtype=np.int64)
        expected_types[a.size + 2 : n_real] = 1
        np.testing.assert_array_equal(s["token_type_ids"], expected_types)
        # A and B come from the layout's sentence range of one document, A before B, split at a sentence end.
        doc, first, stop = (int(ds.layout.doc[i]), int(ds.layout.first[i]), int(ds.layout.stop[i]))
        bounds = sentence_bounds(corpus, doc)
        span = corpus.doc(doc)[bounds[first] : bounds[stop]].astype(np.int64)
        inner = bounds[first + 1 : stop] - bounds[first]  # sentence ends strictly inside the range
        if a.size + b.size < max_tokens:  # nothing truncated: A + B is the whole range
            untruncated += 1
            np.testing.assert_array_equal(np.concatenate([a, b]), span)
            assert a.size in inner
        else:
            starts_a, starts_b = find(span, a), find(span, b)
            assert any(
                sa + a.size <= cut <= sb for sa in starts_a for sb in starts_b for cut in inner
            ), "A and B are not consecutive sentences of the document"
    assert untruncated > len(ds) // 4


def test_pair_layout_short_sequences_and_lengths():
    corpus = word_corpus(1500, seed=31, max_sentences=12)
    ds = BERTPairDataset(corpus, seq_len=40, seed=4, short_seq_prob=0.1)
    layout, max_tokens = ds.layout, 37
    n = len(layout)
    assert n > 1000
    short = int((layout.target < max_tokens).sum())
    # A target is also max_tokens when the uniform draw in [2, max_tokens] hits it.
    p = 0.1 * (1 - 1 / (max_tokens - 1))
    assert abs(short - n * p) < 5 * np.sqrt(n * p * (1 - p)), (short, n)
    assert ((layout.target >= 2) & (layout.target <= max_tokens)).all()
    assert (layout.stop - layout.first >= 2).all()
    # Samples of the same document are consecutive, non-overlapping sentence ranges.
    same_doc = layout.doc[1:] == layout.doc[:-1]
    assert (layout.first[1:][same_doc] == layout.stop[:-1][same_doc]).all()
    lengths = np.array([split_pair(ds.get(i, key=i))[2] for i in range(n)])
    assert lengths.max() <= 40
    assert lengths[layout.target < max_tokens].mean() < lengths[layout.target == max_tokens].mean() - 5
    no_short = BERTPairDataset(corpus, seq_len=40, seed=4, short_seq_prob=0.0)
    assert (no_short.layout.target == max_tokens).all()
    # The layout is a function of the seed only.
    again = BERTPairDataset(corpus, seq_len=40, seed=4, short_seq_prob=0.1).layout
    assert again.digest() == layout.digest()
    assert BERTPairDataset(corpus, seq_len=40, seed=5).layout.digest() != layout.digest()


def test_pair_masking_statistics_and_reproducibility():
    corpus = word_corpus(800, seed=32)
    for whole_word in (False, True):
        ds = BERTPairDataset(corpus, seq_len=64, seed=9, masking=MaskingConfig(whole_word=whole_word))
        totals = np.zeros(4, dtype=np.int64)
        n_real_tokens = n_masked = 0
        for i in range(len(ds)):
            s = ds.get(i, key=3 * i + 1)
            ids = original_ids(s)
            masked = s["labels"] != IGNORE_INDEX
            assert not np.isin(ids[masked], [SPECIAL.cls, SPECIAL.sep, SPECIAL.pad]).any()
            special_pos = np.isin(ids, SPECIAL.ids())
            np.testing.assert_array_equal(s["input_ids"][special_pos], ids[special_pos])
            n_real_tokens += int((~special_pos).sum())
            n_masked += int(masked.sum())
            totals += replacement_counts(s)
        assert abs(n_masked / n_real_tokens - 0.15) < 0.01, (whole_word, n_masked / n_real_tokens)
        check_replacement_split(*totals.tolist())
        a = ds.get(5, key=77)
        b = BERTPairDataset(corpus, seq_len=64, seed=9, masking=MaskingConfig(whole_word=whole_word)).get(5, key=77)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
        assert not np.array_equal(a["labels"], ds.get(5, key=78)["labels"])
        other_seed = BERTPairDataset(corpus, seq_len=64, seed=10, masking=MaskingConfig(whole_word=whole_word))
        assert not np.array_equal(a["labels"], other_seed.get(5, key=77)["labels"])


def test_pair_nsp_labels_and_random_next():
    corpus = word_corpus(400, seed=33)
    ds = BERTPairDataset(corpus, seq_len=48, seed=1, nsp=True)
    labels = []
    for i in range(len(ds)):
        s = ds.get(i, key=i)
        assert s["nsp_labels"].shape == () and s["nsp_labels"].dtype == np.int64
        labels.append(int(s["nsp_labels"]))
        a, b, _ = split_pair(s)
        doc = corpus.doc(int(ds.layout.doc[i])).astype(np.int64)
        if labels[-1] == 0:
            assert find(doc, b), "IsNext B is not from A's document"
        elif b.size >= 3:
            assert not find(doc, b), "a random B came from A's document"
    n = len(labels)
    assert abs(sum(labels) - n / 2) < 5 * np.sqrt(n / 4)
    assert ds.fingerprint() != BERTPairDataset(corpus, seq_len=48, seed=1).fingerprint()


def test_pair_fingerprint_covers_settings_and_errors_are_clear():
    corpus = word_corpus(50, seed=34)
    base = BERTPairDataset(corpus, seq_len=32).fingerprint()
    assert base == BERTPairDataset(word_corpus(50, seed=34), seq_len=32).fingerprint()
    for kwargs in (
        {"seq_len": 33},
        {"short_seq_prob": 0.2},
        {"seed": 1},
        {"masking": MaskingConfig(mask_prob=0.2)},
        {"masking": MaskingConfig(whole_word=True)},
        {"masking": MaskingConfig(replace_mask=0.7)},
    ):
        assert BERTPairDataset(corpus, **{"seq_len": 32, **kwargs}).fingerprint() != base, kwargs
    with pytest.raises(ValueError, match="no sentence index"):
        BERTPairDataset(random_corpus(10), seq_len=32)
    with pytest.raises(ValueError, match="seq_len must be >= 5"):
        BERTPairDataset(corpus, seq_len=4)
    with pytest.raises(ValueError, match=r"short_seq_prob must be in \[0, 1\], got 1.5"):
        BERTPairDataset(corpus, seq_len=32, short_seq_prob=1.5)
    with pytest.raises(ValueError, match=r"sentence_starts\(0\) must be ascending offsets starting at 0"):
        BERTPairDataset(InMemoryCorpus([[10, 11, 12]], SPECIAL, VOCAB, sentence_starts=[[1, 2]]), seq_len=8)
    with pytest.raises(ValueError, match="no document has two or more non-empty sentences"):
        BERTPairDataset(InMemoryCorpus([[10, 11, 12]], SPECIAL, VOCAB, sentence_starts=[[0]]), seq_len=8)
    with pytest.raises(ValueError, match="whole_word_masking=True needs"):
        BERTPairDataset(
            InMemoryCorpus([[10, 11, 12]], SPECIAL, VOCAB, sentence_starts=[[0, 1]]),
            seq_len=8,
            masking=MaskingConfig(whole_word=True),
        )


def test_truncated_lengths_follow_the_longer_side_rule():
    from megagrow.data.bert_pairs import truncated_lengths

    def brute(la: int, lb: int, m: int) -> tuple[int, int]:
        while la + lb > m:
            if la > lb:
                la -= 1
            else:
                lb -= 1
        return la, lb

    for la in range(0, 12):
        for lb in range(0, 12):
            for m in range(2, 15):
                assert truncated_lengths(la, lb, m) == brute(la, lb, m), (la, lb, m)
