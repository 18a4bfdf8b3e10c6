"""Read one file out of a Qt compiled resource bundle (.rcc): GCompris (Debian `gcompris-qt-data`) packs its
Wikimedia photos in them (service/model/README.md, "More source photos").

The format is Qt's own (qtbase src/corelib/io/qresource.cpp, versions 1-3): a big-endian header
("qres", version, tree, data and names offsets), a tree of fixed-size nodes (name offset, flags, then a
child range for a directory or a data offset for a file; 8 more bytes of modification time from version 2),
names as UTF-16 with a length, and data blocks with a length, zlib-compressed when the node says so. The
only readers are Qt itself (PySide6's QResource: a 100+ MB wheel for one training-data fetch) and ad-hoc
scripts, so this reads it in a few lines.
"""

from __future__ import annotations

import struct
import zlib

_DIRECTORY, _ZLIB, _ZSTD = 0x02, 0x01, 0x04


class RccError(ValueError):
    """Not an .rcc bundle, or it has no such file."""


def read_resource(bundle: bytes, path: str) -> bytes:
    """The bytes of the file at `path` ("a/b/c.webp", no leading ":/") inside an .rcc bundle."""
    if bundle[:4] != b"qres":
        raise RccError("not a Qt resource bundle (no 'qres' magic)")
    version, tree, data, names = struct.unpack(">IIII", bundle[4:20])
    if version not in (1, 2, 3):
        raise RccError(f"unknown .rcc version {version}")
    node_size = 14 if version == 1 else 22

    def node_at(k: int) -> tuple[int, int, int, int]:
        """(name offset, flags, child count | locale, first child | data offset) of tree node k."""
        return struct.unpack(">IHII", bundle[tree + k * node_size:tree + k * node_size + 14])

    def name_of(offset: int) -> str:
        (length,) = struct.unpack(">H", bundle[names + offset:names + offset + 2])
        start = names + offset + 6  # length (2 bytes), hash (4 bytes), then UTF-16BE
        return bundle[start:start + 2 * length].decode("utf-16-be")

    node = 0  # the root directory
    for part in [p for p in path.split("/") if p]:
        _, flags, count, first = node_at(node)
        if not flags & _DIRECTORY:
            raise RccError(f"{path}: {part!r} is below a file")
        children = {name_of(node_at(k)[0]): k for k in range(first, first + count)}
        if part not in children:
            raise RccError(f"{path}: no {part!r} in the bundle")
        node = children[part]
    _, flags, _, offset = node_at(node)
    if flags & _DIRECTORY:
        raise RccError(f"{path} is a directory")
    (size,) = struct.unpack(">I", bundle[data + offset:data + offset + 4])
    raw = bundle[data + offset + 4:data + offset + 4 + size]
    if flags & _ZLIB:
        return zlib.decompress(raw[4:])  # a 4-byte uncompressed length, then the zlib stream
    if flags & _ZSTD:
        raise RccError(f"{path}: zstd-compressed resources are not supported")
    return raw
