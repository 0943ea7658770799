"""JPEG structure read from the bytes, without decoding a pixel: marker segments, scans, the EXIF and
ICC payloads, and the image rebuilt from only the segments a decoder needs (a kept original).

Walking segments costs a handful of byte reads each, so the codec can route and refuse inputs (scan
bombs, which path decodes them) before any decoder runs."""

from __future__ import annotations

import re
from collections.abc import Iterator


def jpeg_exif(data: bytes) -> bytes | None:
    """The EXIF payload (APP1 "Exif") of a JPEG, found by walking its marker segments up to the scan.

    No pixel is decoded and no PIL object made: a handful of bytes are read per segment.
    """
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None  # not at a marker: malformed, let the decoder decide
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: headers are over
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return data[pos + 10 : pos + 2 + length]
        pos += 2 + length
    return None


def jpeg_icc(data: bytes, max_bytes: int) -> bytes | None:
    """The embedded ICC profile (APP2 "ICC_PROFILE" chunks joined in their sequence order), or None when
    there is none, its chunks are inconsistent, or it is larger than `max_bytes` (then the image is
    treated as untagged, as browsers treat a profile they cannot use)."""
    chunks: dict[int, bytes] = {}
    total, pos, n = 0, 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xE2 and data[pos + 4 : pos + 16] == b"ICC_PROFILE\x00" and length >= 16:
            # Each chunk: sequence number (from 1), chunk count, then up to 65,519 bytes of the profile.
            body = data[pos + 18 : pos + 2 + length]
            chunks[data[pos + 16]] = body
            total += len(body)
            if total > max_bytes:
                return None
        pos += 2 + length
    if not chunks or sorted(chunks) != list(range(1, len(chunks) + 1)):
        return None
    return b"".join(chunks[i] for i in range(1, len(chunks) + 1))


# The end of a scan's entropy-coded data: 0xFF followed by a marker byte (not a stuffed 0x00, not a
# restart marker inside the scan, not fill).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each segment after SOI, up to and including EOI; a scan (SOS) includes its
    entropy-coded data. ValueError(position) where the structure breaks (no EOI is a break too)."""
    pos, n = 2, len(data)
    while True:
        if pos + 2 > n or data[pos] != 0xFF:
            raise ValueError(pos)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            yield marker, pos, pos + 2
            return
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7 or pos + 4 > n:
            raise ValueError(pos)
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > n or end < pos + 4:
            raise ValueError(pos)
        if marker == 0xDA:
            found = _SCAN_END.search(data, end)
            if found is None:
                raise ValueError(pos)
            end = found.start()
        yield marker, pos, end
        pos = end


def jpeg_scan_count(data: bytes, limit: int) -> int:
    """How many scans (SOS) the JPEG has, counted without decoding; stops counting past `limit`.

    Where the structure breaks, every SOS marker byte pair after that point is counted instead (an
    over-count only ever refuses a broken file)."""
    count = 0
    try:
        for marker, _start, _end in jpeg_segments(data):
            if marker == 0xDA:
                count += 1
                if count > limit:
                    return count
    except ValueError as exc:
        count += data.count(b"\xff\xda", exc.args[0])
    return count


# What a kept original may hold: the tables, the frame, restart interval, scans and EOI. Everything a
# decoder skips (APPn, COM, unknown markers, bytes after EOI) is left out.
_KEPT_MARKERS = frozenset({0xDB, 0xC4, 0xDD, 0xC0, 0xC1, 0xC2, 0xDA, 0xD9})
_JFIF = b"\xff\xe0\x00\x10JFIF\x00"


def kept_jpeg(data: bytes) -> bytes | None:
    """`data` rebuilt as only the image, or None when it cannot be kept (then our encoding is stored).

    Kept: SOI, a plain JFIF APP0 (16 bytes, no thumbnail), the quantisation tables the frame uses, the
    Huffman tables, one baseline/extended/progressive frame, DRI, the scans, EOI. The rebuilt stream
    must then decode strictly (libjpeg-turbo warnings are errors): bytes inside a scan that the decoder
    would skip over ("extraneous bytes before marker") or a bogus progression refuse keeping it.
    """
    import simplejpeg

    try:
        segments = list(jpeg_segments(data))
    except ValueError:
        return None
    frames = [(s, e) for m, s, e in segments if m in (0xC0, 0xC1, 0xC2)]
    if len(frames) != 1 or any(m not in _KEPT_MARKERS and not 0xE0 <= m <= 0xFE for m, _, _ in segments):
        return None  # lossless, hierarchical, arithmetic, DNL or unknown markers: not ours to keep
    fs, fe = frames[0]
    components = data[fs + 9]
    used_q = {data[fs + 10 + 3 * i + 2] for i in range(components) if fs + 10 + 3 * i + 2 < fe}
    out = [b"\xff\xd8"]
    for marker, start, end in segments:
        seg = data[start:end]
        if (
            marker == 0xE0
            and seg[: len(_JFIF)] == _JFIF
            and len(seg) == 18
            and seg[16:18] == b"\x00\x00"
            and len(out) == 1
        ):
            out.append(seg)
        elif marker == 0xDB:
            tables, pos = [], start + 4
            while pos < end:
                size = 129 if data[pos] >> 4 else 65
                if (data[pos] & 0x0F) in used_q:
                    tables.append(data[pos : pos + size])
                pos += size
            if pos != end:
                return None
            if tables:
                body = b"".join(tables)
                out.append(b"\xff\xdb" + (len(body) + 2).to_bytes(2, "big") + body)
        elif marker in _KEPT_MARKERS:
            out.append(seg)
    rebuilt = b"".join(out)
    try:
        simplejpeg.decode_jpeg(rebuilt, colorspace="RGB", strict=True)
    except ValueError:
        return None
    return rebuilt
