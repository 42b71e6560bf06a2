"""The global sample order: world-size independence, epochs, resume, eval sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megagrow.data import EvalLoader, GlobalBatchLoader, GPTDataset, InMemoryCorpus, SpecialTokens


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


def test_rank_slices_are_contiguous_and_keys_are_global_positions():
    loaders = make_loaders(IndexKeyDataset(100), 3, 4, cursor=30)
    keys = [loader.next_micro_batch()["key"].tolist() for loader in loaders]
    assert keys == [[30, 31, 32], [33, 34, 35], [36, 37, 38], [39, 40, 41]]
    assert all(loader.cursor == 42 for loader in loaders)


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
