"""The global sample order: world-size independence, epochs, resume, eval sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megagrow.data import (
    BERTDataset,
    BERTPairDataset,
    EvalLoader,
    GlobalBatchLoader,
    GPTDataset,
    InMemoryCorpus,
    MaskingConfig,
    SpecialTokens,
    sample_key,
)


class IndexKeyDataset:
    """Returns its own (index, key) so tests can see exactly what the loader drew."""

    def __init__(self, n: int, tag: str = "a"):
        self.n = n
        self.tag = tag

    def __len__(self) -> int:
        return self.n

    def get(self, index: int, key: int) -> dict[str, np.ndarray]:
        return {"index": np.array(index, dtype=np.int64), "key": np.array(key, dtype=np.int64)}

    def fingerprint(self) -> str:
        return f"index-key-{self.n}-{self.tag}"


def step_samples(loaders: list[GlobalBatchLoader], accumulation: int) -> dict[str, torch.Tensor]:
    """One optimizer step across all ranks, concatenated in (micro-step, rank) order."""
    parts = [loader.next_micro_batch() for _ in range(accumulation) for loader in loaders]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def make_loaders(dataset, mbs: int, world: int, seed: int = 7, cursor: int = 0) -> list[GlobalBatchLoader]:
    return [GlobalBatchLoader(dataset, mbs, world, r, seed=seed, cursor=cursor) for r in range(world)]


# (micro_batch_size, world_size, accumulation) with global batch 8.
SPLITS_OF_8 = [(8, 1, 1), (4, 1, 2), (1, 1, 8), (4, 2, 1), (2, 2, 2), (1, 2, 4), (2, 4, 1), (1, 4, 2)]


@pytest.mark.parametrize(("mbs", "world", "accumulation"), SPLITS_OF_8)
def test_step_samples_do_not_depend_on_world_size_or_accumulation(mbs, world, accumulation):
    dataset = IndexKeyDataset(37)  # not a multiple of 8: steps straddle epochs
    reference = make_loaders(dataset, 8, 1)
    loaders = make_loaders(dataset, mbs, world)
    for _ in range(12):
        expected, got = step_samples(reference, 1), step_samples(loaders, accumulation)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert {loader.cursor for loader in loaders} == {reference[0].cursor} == {96}


def test_real_gpt_samples_are_world_size_independent():
    rng = np.random.default_rng(0)
    special = SpecialTokens(pad=0, unk=1, cls=2, sep=3, mask=4, eos=5)
    corpus = InMemoryCorpus([rng.integers(6, 500, size=rng.integers(1, 30)) for _ in range(80)], special, 500)
    dataset = GPTDataset(corpus, seq_len=8)
    expected = step_samples(make_loaders(dataset, 4, 1), 1)
    got = step_samples(make_loaders(dataset, 1, 2), 2)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert expected["input_ids"].shape == (4, 8) and expected["input_ids"].dtype == torch.int64


def test_rank_slices_are_contiguous_and_keys_identify_epoch_and_index():
    loaders = make_loaders(IndexKeyDataset(20), 3, 4, cursor=30)
    batches = [loader.next_micro_batch() for loader in loaders]
    positions = np.arange(30, 42)
    indices = loaders[0].indices(positions)
    np.testing.assert_array_equal(torch.cat([b["index"] for b in batches]).numpy(), indices)
    # key = sample_key(epoch, index): (seed, epoch, index) determine a sample's randomness.
    keys = torch.cat([b["key"] for b in batches]).numpy()
    np.testing.assert_array_equal(keys, (positions // 20) * 20 + indices)
    assert all(sample_key(int(k) // 20, int(k) % 20, 20) == k for k in keys)
    assert all(loader.cursor == 42 for loader in loaders)
    unshuffled = GlobalBatchLoader(IndexKeyDataset(20), 3, 1, 0, seed=0, shuffle=False, cursor=30)
    assert unshuffled.next_micro_batch()["key"].tolist() == [30, 31, 32]


def test_every_sample_exactly_once_per_epoch_with_a_new_permutation_each_epoch():
    n = 10
    loader = GlobalBatchLoader(IndexKeyDataset(n), micro_batch_size=4, world_size=1, rank=0, seed=3)
    drawn = torch.cat([loader.next_micro_batch()["index"] for _ in range(10)]).numpy()  # 40 = 4 epochs
    epochs = drawn.reshape(4, n)
    for order in epochs:
        assert sorted(order.tolist()) == list(range(n))
    assert len({tuple(order) for order in epochs}) == 4
    np.testing.assert_array_equal(epochs[1], np.random.Generator(np.random.PCG64([3, 1])).permutation(n))
    assert loader.epoch == 4


def test_no_shuffle_is_the_identity_order():
    loader = GlobalBatchLoader(IndexKeyDataset(5), 2, 1, 0, seed=0, shuffle=False)
    drawn = torch.cat([loader.next_micro_batch()["index"] for _ in range(4)]).tolist()
    assert drawn == [0, 1, 2, 3, 4, 0, 1, 2]


def test_resume_mid_epoch_reproduces_subsequent_batches_even_on_another_world_size():
    dataset = IndexKeyDataset(50)
    uninterrupted = make_loaders(dataset, 2, 2)
    expected = [step_samples(uninterrupted, 2) for _ in range(10)]

    first = make_loaders(dataset, 2, 2)
    for _ in range(4):
        step_samples(first, 2)
    state = first[0].state_dict()
    assert state == {"cursor": 32, "seed": 7, "fingerprint": dataset.fingerprint(), "n_samples": 50}

    for mbs, world, accumulation in ((2, 2, 2), (1, 4, 2), (8, 1, 1)):
        resumed = make_loaders(dataset, mbs, world)
        for loader in resumed:
            loader.load_state_dict(state)
        for step in range(4, 10):
            torch.testing.assert_close(step_samples(resumed, accumulation), expected[step], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        (
            "fingerprint",
            "index-key-50-b",
            "checkpoint fingerprint='index-key-50-b' but this loader has fingerprint='index-key-50-a'",
        ),
        ("seed", 8, "checkpoint seed=8 but this loader has seed=7"),
        ("n_samples", 49, "checkpoint n_samples=49 but this loader has n_samples=50"),
    ],
)
def test_load_state_dict_refuses_other_data_or_seed(field, value, match):
    loader = GlobalBatchLoader(IndexKeyDataset(50), 2, 1, 0, seed=7)
    state = {**loader.state_dict(), "cursor": 10, field: value}
    with pytest.raises(ValueError, match=match):
        loader.load_state_dict(state)
    assert loader.cursor == 0
    with pytest.raises(ValueError, match=r"missing key\(s\) \['cursor'\]"):
        loader.load_state_dict({k: v for k, v in loader.state_dict().items() if k != "cursor"})


def test_allow_fingerprint_change_keeps_the_cursor_and_warns():
    saved = GlobalBatchLoader(IndexKeyDataset(50, tag="a"), 2, 1, 0, seed=7, cursor=24).state_dict()
    loader = GlobalBatchLoader(IndexKeyDataset(40, tag="b"), 2, 1, 0, seed=7)
    with pytest.raises(ValueError, match="allow_fingerprint_change=True"):
        loader.load_state_dict(saved)
    assert loader.cursor == 0
    warning = loader.load_state_dict(saved, allow_fingerprint_change=True)
    assert loader.cursor == 24
    assert warning is not None and "index-key-50-a" in warning and "index-key-40-b" in warning
    assert "n_samples: checkpoint 50 -> now 40" in warning
    assert loader.load_state_dict(loader.state_dict(), allow_fingerprint_change=True) is None
    with pytest.raises(ValueError, match="checkpoint seed=8 but this loader has seed=7"):
        loader.load_state_dict({**saved, "seed": 8}, allow_fingerprint_change=True)


def test_bad_layout_is_rejected():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        GlobalBatchLoader(IndexKeyDataset(5), 1, 2, 2, seed=0)
    with pytest.raises(ValueError, match="micro_batch_size must be >= 1, got 0"):
        GlobalBatchLoader(IndexKeyDataset(5), 0, 1, 0, seed=0)


@pytest.mark.parametrize(("mbs", "world"), [(4, 1), (2, 2), (1, 4)])
def test_eval_loader_is_fixed_unshuffled_and_sharded_like_training(mbs, world):
    dataset = IndexKeyDataset(30)
    loaders = [
        EvalLoader(dataset, mbs, n_samples=12, world_size=world, rank=r, key_offset=1000)
        for r in range(world)
    ]
    assert {len(loader) for loader in loaders} == {12 // (mbs * world)}
    per_rank = [list(loader) for loader in loaders]
    order = [per_rank[r][j] for j in range(len(loaders[0])) for r in range(world)]
    np.testing.assert_array_equal(torch.cat([b["index"] for b in order]).numpy(), np.arange(12))
    np.testing.assert_array_equal(torch.cat([b["key"] for b in order]).numpy(), 1000 + np.arange(12))
    again = list(loaders[0])
    torch.testing.assert_close(again, per_rank[0], rtol=0, atol=0)


def test_eval_loader_rejects_uneven_or_oversized_sets():
    with pytest.raises(ValueError, match=r"n_samples=10 is not a multiple of .* = 4"):
        EvalLoader(IndexKeyDataset(30), 2, n_samples=10, world_size=2, rank=0)
    with pytest.raises(ValueError, match=r"n_samples must be in \[1, 30\]"):
        EvalLoader(IndexKeyDataset(30), 2, n_samples=32, world_size=2, rank=0)


# --- Exact resume of real datasets across world sizes (global batch G = 12) ----------------------

SPECIAL = SpecialTokens(pad=0, unk=1, cls=2, sep=3, mask=4, eos=5)
VOCAB = 600


def sentence_corpus(n_docs: int, seed: int) -> InMemoryCorpus:
    rng = np.random.default_rng(seed)
    docs, starts = [], []
    for _ in range(n_docs):
        lengths = rng.integers(1, 10, size=int(rng.integers(1, 7)))
        docs.append(rng.integers(6, VOCAB, size=int(lengths.sum())))
        starts.append(np.concatenate(([0], np.cumsum(lengths)[:-1])))
    word_starts = rng.random(VOCAB) < 0.6
    word_starts[SPECIAL.ids()] = True
    return InMemoryCorpus(docs, SPECIAL, VOCAB, sentence_starts=starts, word_starts=word_starts)


def make_dataset(kind: str):
    corpus = sentence_corpus(60, seed=11)
    if kind == "gpt":
        return GPTDataset(corpus, seq_len=8)
    if kind == "bert":
        return BERTDataset(corpus, seq_len=10, seed=3)
    if kind == "bert-wwm":
        return BERTDataset(corpus, seq_len=10, seed=3, whole_word=True)
    return BERTPairDataset(corpus, seq_len=24, seed=3, nsp=kind == "pairs-nsp", masking=MaskingConfig())


# (micro_batch_size, accumulation) for world sizes 2 (before the interruption), 1 and 3 (after), G = 12.
G12 = {1: [(12, 1), (4, 3), (6, 2)], 2: [(6, 1), (3, 2)], 3: [(4, 1), (2, 2), (1, 4)]}


@pytest.mark.parametrize("kind", ["gpt", "bert", "bert-wwm", "pairs", "pairs-nsp"])
@pytest.mark.parametrize("before", G12[2])
def test_resume_on_world_size_1_and_3_reproduces_the_uninterrupted_batches(kind, before):
    dataset = make_dataset(kind)
    steps, interrupt_at = 2 * len(dataset) // 12 + 3, len(dataset) // 12 + 1  # crosses epoch boundaries
    reference = make_loaders(dataset, 12, 1)
    expected = [step_samples(reference, 1) for _ in range(steps)]
    assert "labels" in expected[0]

    mbs, accumulation = before
    first = make_loaders(dataset, mbs, 2)
    for step in range(interrupt_at):
        torch.testing.assert_close(step_samples(first, accumulation), expected[step], rtol=0, atol=0)
    state = first[0].state_dict()
    assert state["cursor"] == 12 * interrupt_at and all(loader.state_dict() == state for loader in first)

    for world in (1, 3):
        for mbs, accumulation in G12[world]:
            resumed = make_loaders(make_dataset(kind), mbs, world)
            for loader in resumed:
                loader.load_state_dict(state)
            for step in range(interrupt_at, steps):
                got = step_samples(resumed, accumulation)
                torch.testing.assert_close(got, expected[step], rtol=0, atol=0, msg=f"{kind} w{world} step {step}")


def test_bert_masks_differ_between_epochs_of_the_same_sample():
    dataset = make_dataset("pairs")
    loader = GlobalBatchLoader(dataset, len(dataset), 1, 0, seed=1, shuffle=False)
    epoch0, epoch1 = loader.next_micro_batch(), loader.next_micro_batch()
    torch.testing.assert_close(epoch0["attention_mask"], epoch1["attention_mask"], rtol=0, atol=0)
    assert not torch.equal(epoch0["labels"], epoch1["labels"])
