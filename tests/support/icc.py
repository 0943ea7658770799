"""Matrix/TRC ICC v2 display profiles written from their published definitions (primaries, white point,
tone curve), so the colour tests need no profile file and download nothing.

The colorants are adapted to the ICC's D50 connection space with the Bradford transform, as ICC v2
display profiles are made (and as LittleCMS builds its own sRGB)."""

from __future__ import annotations

import struct

import numpy as np

D50 = np.array([0.9642, 1.0, 0.8249])  # the ICC profile connection space white (s15Fixed16 rounded)
D65_XY = (0.3127, 0.3290)
D50_XY = (0.3457, 0.3585)

# name: ((red xy, green xy, blue xy), white xy, tone curve: a gamma number or "srgb")
SPACES = {
    "srgb": (((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), D65_XY, "srgb"),
    "adobe-rgb-1998": (((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)), D65_XY, 563 / 256),  # 2.19921875
    "display-p3": (((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), D65_XY, "srgb"),
    "prophoto-rgb": (((0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001)), D50_XY, 1.8),
}

_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def xy_to_xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz_matrix(space: str) -> np.ndarray:
    """Linear RGB -> XYZ under the space's own white (Y of white = 1)."""
    primaries, white, _ = SPACES[space]
    m = np.stack([xy_to_xyz(*p) for p in primaries], axis=1)
    return m * np.linalg.solve(m, xy_to_xyz(*white))


def bradford(src_white: np.ndarray, dst_white: np.ndarray) -> np.ndarray:
    cone = (_BRADFORD @ dst_white) / (_BRADFORD @ src_white)
    return np.linalg.inv(_BRADFORD) @ np.diag(cone) @ _BRADFORD


def encode(linear: np.ndarray, curve) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    if curve == "srgb":
        return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return linear ** (1 / curve)


def decode(encoded: np.ndarray, curve) -> np.ndarray:
    encoded = np.clip(encoded, 0.0, 1.0)
    if curve == "srgb":
        return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
    return encoded**curve


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(xyz) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def _curve_tag(curve) -> bytes:
    if curve == "srgb":  # sampled: parametric curves are ICC v4
        table = np.round(decode(np.linspace(0, 1, 4096), "srgb") * 65535).astype(">u2").tobytes()
        return b"curv\0\0\0\0" + struct.pack(">I", 4096) + table
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(curve * 256))  # u8Fixed8 gamma


def _text_tags(description: str) -> dict[bytes, bytes]:
    ascii_ = description.encode("ascii") + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    return {b"desc": desc, b"cprt": b"text\0\0\0\0" + b"No copyright, use freely\0"}


def _assemble(colour_space: bytes, tags: dict[bytes, bytes]) -> bytes:
    """Header, tag table and tag data (4-byte aligned; identical tag bodies shared, as ICC allows)."""
    table, body, offsets = b"", b"", {}
    data_start = 128 + 4 + 12 * len(tags)
    for sig, data in tags.items():
        if data not in offsets:
            offsets[data] = data_start + len(body)
            body += data + b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offsets[data], len(data))
    size = data_start + len(body)
    header = struct.pack(">I4sI4s4s4s", size, b"\0\0\0\0", 0x02100000, b"mntr", colour_space, b"XYZ ")
    header += struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
    header += b"".join(_s15(v) for v in D50) + b"\0" * 48
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def rgb_profile(space: str) -> bytes:
    """An ICC v2 RGB display profile of `space` (a key of SPACES)."""
    _, white, curve = SPACES[space]
    m = bradford(xy_to_xyz(*white), D50) @ rgb_to_xyz_matrix(space)
    tags = _text_tags(f"{space} (test profile from its published primaries)")
    tags |= {b"wtpt": _xyz_tag(D50), b"rXYZ": _xyz_tag(m[:, 0]), b"gXYZ": _xyz_tag(m[:, 1])}
    tags |= {b"bXYZ": _xyz_tag(m[:, 2])}
    trc = _curve_tag(curve)
    tags |= {b"rTRC": trc, b"gTRC": trc, b"bTRC": trc}
    return _assemble(b"RGB ", tags)


def grey_profile(gamma: float) -> bytes:
    """An ICC v2 grey display profile: luminance = value ** gamma."""
    tags = _text_tags(f"grey gamma {gamma} (test profile)") | {b"wtpt": _xyz_tag(D50), b"kTRC": _curve_tag(gamma)}
    return _assemble(b"GRAY", tags)
