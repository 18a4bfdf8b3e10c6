"""The extra photo catalogue (part of the 2.0 recipe): consistent, never reserved, never in val/test."""

import inspect
import shutil

import pytest

from service.training import sources
from service.training.sources import (EXTRA_PHOTOS, PLASMA_PHOTOS, RESERVED_PACKAGES, SKIMAGE_PHOTOS,
                                      TEST_SOURCES, VAL_SOURCES, _split_of)


def test_catalogue_ids_unique_and_disjoint_from_default():
    ids = [p.id for p in EXTRA_PHOTOS]
    assert len(ids) == len(set(ids))
    default = {f"plasma/{n}" for n in PLASMA_PHOTOS} | {f"skimage/{n.rsplit('.', 1)[0]}" for n in SKIMAGE_PHOTOS}
    assert not set(ids) & default
    assert len({(p.package, p.member) for p in EXTRA_PHOTOS}) == len(EXTRA_PHOTOS)


def test_catalogue_entries_complete_and_not_reserved():
    for p in EXTRA_PHOTOS:
        assert p.kind in ("deb", "wheel"), p
        assert p.license.strip() and p.version.strip() and p.shows.strip() and p.member.strip(), p
        assert not any(p.package.startswith(r) for r in RESERVED_PACKAGES), p
        assert p.member.lower().endswith((".jpg", ".png", ".dat")), p


def test_split_is_fixed_by_name():
    """Test and val sources exist in the catalogues; everything else, including any photo added later, is train."""
    ids = [p.id for p in EXTRA_PHOTOS] + [f"plasma/{n}" for n in PLASMA_PHOTOS] + \
        [f"skimage/{n.rsplit('.', 1)[0]}" for n in SKIMAGE_PHOTOS]
    split = _split_of(ids + ["newpkg/new-photo"])
    assert {i for i, s in split.items() if s == "test"} == set(TEST_SOURCES) and len(TEST_SOURCES) == 8
    assert {i for i, s in split.items() if s == "val"} == set(VAL_SOURCES) and len(VAL_SOURCES) == 4
    assert split["newpkg/new-photo"] == "train"


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
