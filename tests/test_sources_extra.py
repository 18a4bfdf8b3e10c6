"""The extra photo catalogues: consistent, never reserved, split by name (GCompris's photos: val, and a second
test split that load_sources() never loads)."""

import inspect
import json
import shutil

import numpy as np
import pytest

from service.model.checkpoint import DEFAULT_CHECKPOINT, manifest_path
from service.training import photo_catalogue as catalogue
from service.training import sources
from service.training.qt_rcc import RccError, read_resource
from service.training.recipes import recipe_flags
from service.training.photo_catalogue import (EXTRA_PHOTOS, GCOMPRIS_PHOTOS, GCOMPRIS_TEST2_PHOTOS,
                                              GCOMPRIS_TRAIN_PHOTOS, PLASMA_PHOTOS, RESERVED_PACKAGES,
                                              SCENERY_TRAIN_PHOTOS, SKIMAGE_PHOTOS, TEST2_SOURCES, TEST_SOURCES,
                                              TRAIN_PHOTO_RECIPES, VAL_SOURCES)
from service.training.sources import _split_of

CATALOGUE = EXTRA_PHOTOS + GCOMPRIS_PHOTOS + GCOMPRIS_TEST2_PHOTOS + GCOMPRIS_TRAIN_PHOTOS + SCENERY_TRAIN_PHOTOS


def test_catalogue_ids_unique_and_disjoint_from_default():
    ids = [p.id for p in CATALOGUE]
    assert len(ids) == len(set(ids))
    default = {f"plasma/{n}" for n in PLASMA_PHOTOS} | {f"skimage/{n.rsplit('.', 1)[0]}" for n in SKIMAGE_PHOTOS}
    assert not set(ids) & default
    assert len({(p.package, p.member) for p in CATALOGUE}) == len(CATALOGUE)


def test_catalogue_entries_complete_and_not_reserved():
    for p in CATALOGUE:
        assert p.kind in ("deb", "wheel", "rcc"), p
        assert p.license.strip() and p.version.strip() and p.shows.strip() and p.member.strip(), p
        assert not any(p.package.startswith(r) for r in RESERVED_PACKAGES), p
        assert p.member.lower().endswith((".jpg", ".png", ".dat", ".webp")), p
        assert (p.kind == "rcc") == (p.member.count(".rcc::") == 1), p


def test_split_is_fixed_by_name():
    """Test and val sources exist in the catalogues; everything else, including any photo added later, is train.
    The GCompris photos are val (added after 2.4.0 for the selection rule: no training set changed) or, after
    2.5.0, the second test split, which stays test2 even if a loader ever lists it with the others."""
    ids = [p.id for p in CATALOGUE] + [f"plasma/{n}" for n in PLASMA_PHOTOS] + \
        [f"skimage/{n.rsplit('.', 1)[0]}" for n in SKIMAGE_PHOTOS]
    split = _split_of(ids + ["newpkg/new-photo"])
    assert {i for i, s in split.items() if s == "test"} == set(TEST_SOURCES) and len(TEST_SOURCES) == 8
    assert {i for i, s in split.items() if s == "val"} == set(VAL_SOURCES) and len(VAL_SOURCES) == 20
    assert {split[p.id] for p in GCOMPRIS_PHOTOS} == {"val"}
    assert {i for i, s in split.items() if s == "test2"} == set(TEST2_SOURCES) and len(TEST2_SOURCES) == 49
    assert split["newpkg/new-photo"] == "train"
    assert {split[p.id] for p in GCOMPRIS_TRAIN_PHOTOS} == {"train"} and len(GCOMPRIS_TRAIN_PHOTOS) == 33
    assert {split[p.id] for p in SCENERY_TRAIN_PHOTOS} == {"train"} and len(SCENERY_TRAIN_PHOTOS) == 23


def test_the_shipped_manifest_records_recipe_12_photos_as_the_catalogue_does():
    """2.6.0 trained on recipe 12: its manifest lists every one of those photos as train, with the licence and file
    the catalogue records (what a user reads to attribute them), and no val / test photo as train."""
    manifest = json.loads(manifest_path(DEFAULT_CHECKPOINT).read_text())
    assert "recipe_v12" in manifest["recipe"]
    train = {e["id"]: e for e in manifest["sources"]["train"]}
    for p in GCOMPRIS_TRAIN_PHOTOS:
        assert train[p.id]["license"] == p.license and train[p.id]["file"] == p.member, p.id
    assert not set(train) & (set(VAL_SOURCES) | set(TEST_SOURCES) | set(TEST2_SOURCES))
    assert len(train) == 41 + 33


def test_each_photo_recipe_alone_decides_whether_its_train_photos_load(monkeypatch):
    """load_sources() follows the recipe (recipes 12 and 13 on or off) unless told; the shipped recipe's photo set
    does not change, so every earlier checkpoint's data_hash still describes what load_sources() returns for it."""
    seen = []
    monkeypatch.setattr(sources, "_fetch_deb", lambda root: root)
    monkeypatch.setattr(sources, "_pick_plasma_image", lambda folder: folder)
    monkeypatch.setattr(sources, "_fetch_wheel", lambda root: root)
    monkeypatch.setattr(sources, "_fetch_extra", lambda root, ph: root / ph.id)
    monkeypatch.setattr(sources, "_load_entries", lambda root, entries: seen.append([e[0] for e in entries]))
    sets = {flag: {p.id for p in photos} for flag, photos in TRAIN_PHOTO_RECIPES.items()}
    both = ("recipe12", "recipe13")
    for flags, kwargs, on in (({}, {}, ()), ({"recipe12": True}, {}, ("recipe12",)),
                              ({"recipe13": True}, {}, ("recipe13",)), (dict.fromkeys(both, True), {}, both),
                              ({"recipe12": True}, {"more_train": False}, ()), ({}, {"more_train": True}, both)):
        with recipe_flags(**{"recipe12": False, "recipe13": False, **flags}):
            sources.load_sources(**kwargs)
        for flag, ids in sets.items():
            assert (ids <= set(seen[-1])) is (flag in on) and not (ids & set(seen[-1]) and flag not in on), flags
        assert len(seen[-1]) == 69 + sum(len(sets[f]) for f in on) and len(set(seen[-1])) == len(seen[-1])


def test_recipe_uses_them_and_1x_set_still_reachable():
    """Training and evaluation load the extras by default; extra=False is the 17-photo set of 1.x."""
    assert inspect.signature(sources.load_sources).parameters["extra"].default is True


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_fetch_one_deb_photo(tmp_path):
    """Real fetch of the smallest package; skipped when the Debian mirror is unreachable."""
    photo = next(p for p in EXTRA_PHOTOS if p.package == "palapeli-data")
    try:
        path = sources._fetch_extra(tmp_path, photo)
    except Exception as e:  # no mirror / no apt lists: not this test's subject
        pytest.skip(f"apt-get download unavailable: {e}")
    rgb = sources._decode(str(path))
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and max(rgb.shape[:2]) >= 512


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_fetch_one_photo_out_of_a_qt_resource_bundle(tmp_path, monkeypatch, capsys):
    """Real fetch of gcompris-qt-data and a real read of its .rcc bundle (qt_rcc): the WebP (stored as is) decodes
    to a photo, a second fetch reads the cached file, the bundle's licence README (zlib-compressed in the bundle)
    says what sources.py records; a missing name or a file that is not a bundle is a clear error. The second
    test split loads from the same bundles, and `aesrm-eval --split test2` scores the shipped model on it."""
    photo = next(p for p in GCOMPRIS_PHOTOS if p.id == "gcompris/pont-du-gard")
    try:
        path = sources._fetch_extra(tmp_path / "sources", photo)
    except RuntimeError as e:  # no mirror / no apt lists: not this test's subject
        pytest.skip(f"apt-get download unavailable: {e}")
    rgb = sources._decode(str(path))
    assert rgb.shape == (681, 1024, 3) and 40 < rgb.mean() < 220 and rgb.std() > 20
    assert sources._fetch_extra(tmp_path / "sources", photo) == path
    root = tmp_path / "sources" / "extra" / photo.package / "x"
    bundle = (root / photo.member.split("::")[0]).read_bytes()
    checked = 0
    every = GCOMPRIS_PHOTOS + GCOMPRIS_TEST2_PHOTOS + GCOMPRIS_TRAIN_PHOTOS
    for prefix in (catalogue._GC_M, catalogue._GC_A, catalogue._GC_F, catalogue._GC_E):  # every recorded licence
        name, folder = prefix.split("::")
        readme = read_resource((root / name).read_bytes(), folder + "README").decode()
        blocks = {f: block for block in readme.split("\n\n") for f in block.split() if f.endswith(".webp")}
        for p in (p for p in every if p.member.startswith(prefix)):
            block = blocks[p.member[len(prefix):]]
            lic, (author, site) = p.license.split(" (")[0], p.license.split(" (")[1].rstrip(")").rsplit(", ", 1)
            assert f"Copyright: {author}" in block, (p.id, block)
            assert {"Wikimedia Commons": "commons.wikimedia.org", "Flickr": "www.flickr.com"}[site] in block, p.id
            said = block.split("License: ")[1].split("\n")[0].lower().replace(" ", "-")
            assert said == lic.lower().replace(" ", "-"), (p.id, block)
            checked += 1
    assert checked == len(every) == 16 + 49 + 33
    test2 = sources.load_test2_sources(tmp_path)  # every second-test photo decodes, from the same bundles
    assert [s.id for s in test2] == list(TEST2_SOURCES) and {s.split for s in test2} == {"test2"}
    for s in test2:
        h, w = s.levels[0].shape[:2]
        assert max(h, w) >= 512 and min(h, w) >= 256 and s.levels[0].std() > 20, (s.id, s.levels[0].shape)
        assert s.levels[1].shape[0] == h // 2
    more = sources.load_sources(tmp_path, more_train=True)  # recipes 12 and 13's train photos decode, are train,
    opt_in = {p.id for photos in TRAIN_PHOTO_RECIPES.values() for p in photos}  # and are no copy of a val / test photo
    extra = [s for s in more if s.id in opt_in]
    assert len(extra) == 33 + 23 and {s.split for s in extra} == {"train"}
    for package, said in ((catalogue._KR, ("Author of new images: Slava Anishenko", "License: Public Domain")),
                          (catalogue._LL, ("static/common/backgrounds/*\nCopyright: Various artists\n"
                                         "License: CC-BY-NC-ND-3.0 or GFDL-1.3\nComment: downloaded from "
                                         "https://commons.wikimedia.org",)),
                          (catalogue._ZO, ("Files: *\nCopyright: 2002-2015 Jason Geiger\n           2008-2016 Jeroen "
                                         "Roos\nLicense: GPL-2+",))):  # recipe 13's licences, as debian/copyright says
        text = (tmp_path / "sources" / "extra" / package / "x" / "usr/share/doc" / package / "copyright").read_text()
        assert all(part in text for part in said), package

    def thumb(s):  # a 24 x 24 grey thumbnail, normalised: near 1.0 against the same picture at any size
        g = s.levels[1].astype(np.float64).mean(2)
        t = g[np.linspace(0, g.shape[0] - 1, 24).astype(int)][:, np.linspace(0, g.shape[1] - 1, 24).astype(int)]
        return (t - t.mean()).ravel() / np.linalg.norm(t - t.mean())
    held = np.stack([thumb(s) for s in more + test2 if s.split != "train"])
    for s in extra:
        h, w = s.levels[0].shape[:2]
        assert max(h, w) >= 768 and min(h, w) >= 400 and s.levels[0].std() > 20, (s.id, s.levels[0].shape)
        assert (held @ thumb(s)).max() < 0.9, s.id
    from service.training.evaluate import main

    monkeypatch.setenv("AESRM_DATA_DIR", str(tmp_path))  # the bundle fetched above, nothing else
    ckpt = tmp_path / "ckpt" / DEFAULT_CHECKPOINT.name  # a copy: --write-manifest must not touch the shipped one
    ckpt.parent.mkdir()
    for f in (DEFAULT_CHECKPOINT, manifest_path(DEFAULT_CHECKPOINT)):
        shutil.copy(f, ckpt.parent / f.name)
    shipped = json.loads(manifest_path(DEFAULT_CHECKPOINT).read_text())
    with recipe_flags():  # the CLI switches to the checkpoint's recipe for good; later tests need theirs back
        main(["--checkpoint", str(ckpt), "--split", "test2", "--per-criterion", "1", "--heldout", "--per-family",
              "1", "--threads", "1", "--json", str(tmp_path / "test2.json"), "--write-manifest"])
    assert "test2 sources: gcompris/petra, gcompris/ajanta-cave" in capsys.readouterr().out
    out = json.loads((tmp_path / "test2.json").read_text())
    assert out["split"] == "test2" and out["heldout_photos"] == "test2 split"
    assert out["metrics"]["pairs"] == 3 * 12 and out["heldout"]["groups"] == 17
    written = json.loads(manifest_path(ckpt).read_text())  # under metrics.test2, everything else as it was
    test2 = written["metrics"].pop("test2")
    assert test2["photos"] == 49 and test2["test"] == out["metrics"] and test2["checkpoint_sha256"]
    assert test2["heldout_families"]["all"] == out["heldout"]["all"]
    shipped["metrics"].pop("test2", None)
    assert written == shipped
    with pytest.raises(SystemExit):  # val figures have no place in the manifest
        main(["--checkpoint", str(ckpt), "--split", "val", "--write-manifest"])
    with pytest.raises(RccError, match="no 'nope.webp'"):
        read_resource(bundle, "gcompris/src/activities/explore_monuments/resource/france/nope.webp")
    with pytest.raises(RccError, match="directory"):
        read_resource(bundle, "gcompris/src/activities")
    with pytest.raises(RccError, match="magic"):
        read_resource(path.read_bytes(), "anything")
