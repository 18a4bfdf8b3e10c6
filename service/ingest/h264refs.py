"""Proof that an H.264 stream's I and P pictures never predict from a B picture.

When that holds, a decoder that skips every B picture (FFmpeg skip_frame=BIDIR) still outputs each I and P
picture bit-exactly, so the sampler can walk from a keyframe to a target over I/P pictures only. It does not
hold in general: x264's default b-pyramid ("normal") keeps B pictures as references and, with more than one
reference (preset medium and slower), P pictures predict from them; FFmpeg then conceals the missing
reference without any error or corrupt flag. So the stream's own slice headers are checked, by replaying the
reference picture marking (sliding window, MMCO) and building every P slice's list 0 (initial order and
ref_pic_list_modification, H.264 8.2.4 / 8.2.5): a B picture in the active part of any list 0 means "no".
A skipped B reference picture also takes its MMCO with it (x264 b-pyramid B-refs carry one), and FFmpeg
marks a placeholder by sliding window in its place, so two reference states are replayed, the encoder's
and the skipping decoder's, and each P list 0 must be the same in both.

Conservative: anything this module does not model (field pictures, long-term references, MMCO other than
"unmark one short-term picture", frame_num gaps, SP/SI slices, slice groups, redundant pictures, pictures
mixing B and non-B slices, keyframes that are not IDR, unparsable or truncated headers) answers "no", and
the caller keeps skipping non-reference pictures only.
"""

from __future__ import annotations

from collections.abc import Iterable

_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}
_SLICE_HEADER_BYTES = 512  # any header this module can prove things about fits in this many bytes


class _Unprovable(Exception):
    pass


class _Bits:
    """Exp-Golomb reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, rbsp: bytes) -> None:
        self.s = bin(int.from_bytes(b"\x01" + rbsp, "big"))[3:]  # leading 0x01 keeps the zeros
        self.i = 0

    def u(self, n: int) -> int:
        if n == 0:
            return 0
        if self.i + n > len(self.s):
            raise _Unprovable("header runs past the data")
        v = int(self.s[self.i:self.i + n], 2)
        self.i += n
        return v

    def ue(self) -> int:
        j = self.s.find("1", self.i)
        if j < 0 or j - self.i > 31:
            raise _Unprovable("bad exp-golomb code")
        zeros = j - self.i
        self.i = j + 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00") if b"\x00\x00\x03" in nal else nal


def _sps(b: _Bits) -> tuple[int, dict]:
    profile = b.u(8)
    b.u(16)  # constraint flags, level
    sps_id = b.ue()
    chroma, separate = 1, 0
    if profile in _HIGH_PROFILES:
        chroma = b.ue()
        if chroma == 3:
            separate = b.u(1)
        b.ue()
        b.ue()  # bit depths
        b.u(1)
        if b.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if b.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt or last
    log2_fn = b.ue() + 4
    poc_type = b.ue()
    if chroma > 3 or log2_fn > 16 or poc_type > 2:
        raise _Unprovable("SPS values out of range")
    sps = {"log2_max_frame_num": log2_fn, "poc_type": poc_type, "chroma_array_type": 0 if separate else chroma,
           "separate_colour_plane": separate}
    if poc_type == 0:
        sps["log2_max_poc_lsb"] = b.ue() + 4
        if sps["log2_max_poc_lsb"] > 16:
            raise _Unprovable("SPS values out of range")
    elif poc_type == 1:
        sps["delta_pic_order_always_zero"] = b.u(1)
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    sps["max_num_ref_frames"] = b.ue()
    if sps["max_num_ref_frames"] > 16:
        raise _Unprovable("SPS values out of range")
    sps["gaps_allowed"] = b.u(1)
    b.ue()
    b.ue()  # picture size in macroblocks
    sps["frame_mbs_only"] = b.u(1)
    return sps_id, sps


def _pps(b: _Bits) -> tuple[int, dict]:
    pps_id, sps_id = b.ue(), b.ue()
    b.u(1)  # entropy_coding_mode_flag
    pps = {"sps_id": sps_id, "bottom_field_poc": b.u(1)}
    if b.ue() != 0:
        raise _Unprovable("slice groups")
    pps["num_ref_idx_l0"] = b.ue() + 1
    pps["num_ref_idx_l1"] = b.ue() + 1
    if max(pps["num_ref_idx_l0"], pps["num_ref_idx_l1"]) > 32:
        raise _Unprovable("PPS values out of range")
    pps["weighted_pred"] = b.u(1)
    pps["weighted_bipred"] = b.u(2)
    b.se()
    b.se()
    b.se()  # qp, qs, chroma qp offset
    b.u(1)
    b.u(1)  # deblocking control, constrained intra
    pps["redundant_pic_cnt"] = b.u(1)
    return pps_id, pps


def _modifications(b: _Bits) -> list[tuple[int, int]]:
    ops = []
    if b.u(1):
        while True:
            op = b.ue()
            if op == 3:
                break
            if op > 2:
                raise _Unprovable(f"modification_of_pic_nums_idc {op}")
            ops.append((op, b.ue()))
    return ops


def _weights(b: _Bits, n: int, chroma: bool) -> None:
    for _ in range(n):
        if b.u(1):
            b.se()
            b.se()
        if chroma and b.u(1):
            for _ in range(4):
                b.se()


def _slice(b: _Bits, nal_type: int, ref_idc: int, spss: dict, ppss: dict) -> dict:
    b.ue()  # first_mb_in_slice
    kind = "PBI??"[b.ue() % 5]
    if kind == "?":
        raise _Unprovable("SP/SI slice")
    pps = ppss.get(b.ue())
    sps = spss.get(pps["sps_id"]) if pps else None
    if sps is None:
        raise _Unprovable("slice before its parameter sets")
    if sps["separate_colour_plane"]:
        b.u(2)
    s = {"kind": kind, "ref": ref_idc != 0, "idr": nal_type == 5, "frame_num": b.u(sps["log2_max_frame_num"]),
         "sps": sps}
    if not sps["frame_mbs_only"] and b.u(1):
        raise _Unprovable("field picture")
    if nal_type == 5:
        b.ue()
    if sps["poc_type"] == 0:
        b.u(sps["log2_max_poc_lsb"])
        if pps["bottom_field_poc"]:
            b.se()
    if sps["poc_type"] == 1 and not sps["delta_pic_order_always_zero"]:
        b.se()
        if pps["bottom_field_poc"]:
            b.se()
    if pps["redundant_pic_cnt"] and b.ue():
        raise _Unprovable("redundant picture")
    n0, n1 = pps["num_ref_idx_l0"], pps["num_ref_idx_l1"]
    if kind == "B":
        b.u(1)  # direct_spatial_mv_pred_flag
    if kind != "I" and b.u(1):  # num_ref_idx_active_override_flag
        n0 = b.ue() + 1
        if kind == "B":
            n1 = b.ue() + 1
        if max(n0, n1) > 32:
            raise _Unprovable("num_ref_idx out of range")
    s["num_ref_idx_l0"] = n0
    s["mods"] = _modifications(b) if kind != "I" else []
    if kind == "B":
        _modifications(b)
    chroma = sps["chroma_array_type"] != 0
    if (pps["weighted_pred"] and kind == "P") or (pps["weighted_bipred"] == 1 and kind == "B"):
        b.ue()
        if chroma:
            b.ue()
        _weights(b, n0, chroma)
        if kind == "B":
            _weights(b, n1, chroma)
    s["mmco"] = []
    if ref_idc:
        if nal_type == 5:
            b.u(1)
            if b.u(1):
                raise _Unprovable("long-term reference")
        elif b.u(1):  # adaptive_ref_pic_marking_mode_flag
            s["adaptive"] = True
            while True:
                op = b.ue()
                if op == 0:
                    break
                if op != 1:
                    raise _Unprovable(f"memory_management_control_operation {op}")
                s["mmco"].append(b.ue())
    return s


def _nals(data: bytes, length_size: int | None) -> Iterable[bytes]:
    if length_size:
        i = 0
        while i + length_size <= len(data):
            n = int.from_bytes(data[i:i + length_size], "big")
            i += length_size
            if n == 0 or i + n > len(data):
                raise _Unprovable("bad NAL length")
            yield data[i:i + n]
            i += n
        return
    for chunk in data.split(b"\x00\x00\x01")[1:]:  # Annex B; a 4-byte start code leaves a trailing 00
        yield chunk.rstrip(b"\x00") if chunk.endswith(b"\x00") else chunk


def _avcc(extradata: bytes | None) -> tuple[int | None, list[bytes]]:
    """(NAL length size, parameter-set NALs) from an MP4/MKV avcC record; (None, Annex B NALs) otherwise."""
    if not extradata:
        return None, []
    if extradata[0] != 1:
        return None, list(_nals(extradata, None))
    size = (extradata[4] & 3) + 1
    nals, i = [], 5
    for count_mask in (0x1F, 0xFF):
        if i >= len(extradata):
            raise _Unprovable("short avcC")
        count = extradata[i] & count_mask
        i += 1
        for _ in range(count):
            n = int.from_bytes(extradata[i:i + 2], "big")
            nals.append(extradata[i + 2:i + 2 + n])
            i += 2 + n
    return size, nals


class _Dpb:
    """Short-term reference frames as (frame_num, is_b) in one decoder's view, replayed in decode order."""

    def __init__(self) -> None:
        self.short: list[tuple[int, bool]] = []
        self.max_fn = 1

    def wrap(self, n: int, fn: int) -> int:  # FrameNumWrap relative to the current frame_num
        return n - self.max_fn if n > fn else n

    def mark(self, fn: int, is_b: bool, num_ref_frames: int, mmco: list[int] | None) -> None:
        if mmco is not None:  # adaptive marking: only "unmark short-term picture" is modelled
            for diff in mmco:
                pic = fn - (diff + 1)
                if not any(self.wrap(r[0], fn) == pic for r in self.short):
                    raise _Unprovable("MMCO names a picture not in the DPB")
                self.short = [r for r in self.short if self.wrap(r[0], fn) != pic]
        elif len(self.short) >= max(num_ref_frames, 1):  # sliding window
            self.short.remove(min(self.short, key=lambda r: self.wrap(r[0], fn)))
        self.short.append((fn, is_b))

    def list0(self, s: dict, fn: int) -> list:
        n, max_fn = s["num_ref_idx_l0"], self.max_fn
        refs = sorted(self.short, key=lambda r: -self.wrap(r[0], fn))  # 8.2.4.2.1: descending PicNum
        lst: list = (refs + [None] * n)[:n]
        pred, idx = fn, 0
        for op, arg in s["mods"]:  # 8.2.4.3.1
            if op == 2:
                raise _Unprovable("long-term reference in a list modification")
            no_wrap = pred - (arg + 1) if op == 0 else pred + (arg + 1)
            no_wrap = no_wrap + max_fn if no_wrap < 0 else no_wrap - max_fn if no_wrap >= max_fn else no_wrap
            pred = no_wrap
            pic_num = no_wrap - max_fn if no_wrap > fn else no_wrap
            pic = next((r for r in refs if self.wrap(r[0], fn) == pic_num), None)
            if pic is None:
                raise _Unprovable("list modification names a picture not in the DPB")
            lst = lst[:idx] + [pic] + [r for r in lst[idx:] if r is None or self.wrap(r[0], fn) != pic_num]
            lst = (lst + [None] * n)[:n]
            idx += 1
        return lst


class _Replay:
    """The encoder's reference state next to that of a decoder that skips every B picture (and, as FFmpeg's
    skip_frame=BIDIR does, every non-reference picture). FFmpeg never starts a skipped picture, so at the
    next decoded one it sees a frame_num gap and inserts a placeholder per missing frame_num, marked by
    sliding window (h264_slice.c, h264_field_start). Each decoded P slice must then find the same list 0 in
    both states, with no B picture and no placeholder in its active part."""

    def __init__(self) -> None:
        self.enc, self.dec = _Dpb(), _Dpb()
        self.prev_ref_fn: int | None = None  # PrevRefFrameNum of the stream
        self.dec_prev_fn: int | None = None  # the last frame_num the skipping decoder started

    def picture(self, slices: list[dict]) -> None:
        first = slices[0]
        kinds = {s["kind"] for s in slices}
        if "B" in kinds and len(kinds) > 1:
            raise _Unprovable("picture mixes B and non-B slices")
        if any(s["ref"] != first["ref"] for s in slices):
            raise _Unprovable("nal_ref_idc differs between slices")
        is_b, is_ref, sps, fn = "B" in kinds, first["ref"], first["sps"], first["frame_num"]
        max_fn = 1 << sps["log2_max_frame_num"]
        self.enc.max_fn = self.dec.max_fn = max_fn
        if first["idr"]:
            self.enc.short, self.dec.short, self.dec_prev_fn = [], [], None
        elif self.prev_ref_fn is None:
            raise _Unprovable("stream does not start with an IDR picture")
        elif fn not in (self.prev_ref_fn, (self.prev_ref_fn + 1) % max_fn):
            raise _Unprovable("frame_num gap in the stream")
        mmco = first["mmco"] if first.get("adaptive") else None
        if is_b or not is_ref:  # skipped by the decoder: only the encoder's state moves
            if is_ref:
                self.enc.mark(fn, True, sps["max_num_ref_frames"], mmco)
                self.prev_ref_fn = fn
            return
        if self.dec_prev_fn is not None:
            self._fill_gap(fn, sps)
        for s in slices:
            if s["kind"] == "P":
                want, got = self.enc.list0(s, fn), self.dec.list0(s, fn)
                if any(r is not None and r[1] for r in want + got):
                    raise _Unprovable(f"P picture frame_num {fn} predicts from a B picture")
                if [r and r[0] for r in want] != [r and r[0] for r in got]:
                    raise _Unprovable(f"P picture frame_num {fn}: a skipped picture's MMCO changes its list 0")
        self.enc.mark(fn, False, sps["max_num_ref_frames"], mmco)
        self.dec.mark(fn, False, sps["max_num_ref_frames"], mmco)
        self.prev_ref_fn = self.dec_prev_fn = fn

    def _fill_gap(self, fn: int, sps: dict) -> None:
        """FFmpeg's frame_num gap handling, including its shortening of gaps longer than the DPB."""
        max_fn, prev = self.dec.max_fn, self.dec_prev_fn
        if fn == prev:
            return
        unwrapped = prev - max_fn if prev > fn else prev
        if fn - unwrapped > sps["max_num_ref_frames"]:
            prev = (fn - sps["max_num_ref_frames"] - 1) % max_fn
        while fn != prev and fn != (prev + 1) % max_fn:
            prev = (prev + 1) % max_fn
            self.dec.mark(prev, True, sps["max_num_ref_frames"], None)


def b_frames_disposable(extradata: bytes | None, packets: Iterable[tuple[bytes, bool]]) -> tuple[bool, str]:
    """(True, "" or a note) when skipping every B picture leaves each I/P picture of the stream bit-exact,
    else (False, the reason). `packets`: (data, is_keyframe) of the stream's packets in decode order, one
    access unit each, as demuxed. Every keyframe (seek point) must be an IDR picture: a seek then leaves
    the decoder in the state this replay has at that point (empty DPB)."""
    try:
        length_size, nals = _avcc(extradata)
        spss: dict = {}
        ppss: dict = {}
        replay = _Replay()
        saw_b_ref = False

        def params(nal: bytes) -> None:
            t = nal[0] & 0x1F
            if t == 7:
                k, v = _sps(_Bits(_rbsp(nal[1:])))
                spss[k] = v
            elif t == 8:
                k, v = _pps(_Bits(_rbsp(nal[1:])))
                ppss[k] = v

        for nal in nals:
            params(nal)
        for data, keyframe in packets:
            slices = []
            for nal in _nals(data, length_size):
                if not nal:
                    continue
                t = nal[0] & 0x1F
                if t in (7, 8):
                    params(nal)
                elif t in (1, 5):
                    slices.append(_slice(_Bits(_rbsp(nal[1:_SLICE_HEADER_BYTES])), t, (nal[0] >> 5) & 3,
                                         spss, ppss))
                elif t in (2, 3, 4):
                    raise _Unprovable("data partitioning")
            if keyframe and not (slices and slices[0]["idr"]):
                raise _Unprovable("a keyframe that is not an IDR picture")
            if slices:
                saw_b_ref |= slices[0]["kind"] == "B" and slices[0]["ref"]
                replay.picture(slices)
        return True, "" if saw_b_ref else "no B reference pictures"
    except _Unprovable as exc:
        return False, str(exc)
    except Exception as exc:  # hostile input: whatever the parser trips on means "not proven"
        return False, f"unparsable: {type(exc).__name__}"
