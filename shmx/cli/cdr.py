"""A bounds-checked reader of the two ROS 2 image messages in CDR (XCDR1,
little or big endian), the ``cdr`` message encoding of rosbag2's MCAP files:

    sensor_msgs/msg/Image:    std_msgs/Header header (Time stamp {int32 sec,
                              uint32 nanosec}, string frame_id), uint32 height,
                              uint32 width, string encoding, uint8 is_bigendian,
                              uint32 step, uint8[] data
    foxglove_msgs/msg/RawImage: builtin_interfaces/Time timestamp, string
                              frame_id, uint32 width, uint32 height, string
                              encoding, uint32 step, uint8[] data

Every length is checked against the bytes that are there, so a hostile
message raises ``CdrError``; the pixels are returned as a memoryview (no copy).
"""
from __future__ import annotations

import struct
from typing import Dict, Union

SENSOR_IMAGE = "sensor_msgs/msg/Image"
FOXGLOVE_RAW_IMAGE = "foxglove_msgs/msg/RawImage"
IMAGE_TYPES = (SENSOR_IMAGE, FOXGLOVE_RAW_IMAGE)


class CdrError(ValueError):
    """A CDR message that does not decode."""


class _Reader:
    def __init__(self, data: Union[bytes, memoryview]) -> None:
        buf = memoryview(data).cast("B")
        if len(buf) < 4:
            raise CdrError(f"{len(buf)} bytes is shorter than the 4-byte CDR encapsulation header")
        kind = buf[1]
        if buf[0] != 0 or kind not in (0, 1):  # CDR_BE, CDR_LE (XCDR1 plain)
            raise CdrError(f"unsupported CDR encapsulation 0x{buf[0]:02x}{buf[1]:02x}")
        self.endian = "<" if kind == 1 else ">"
        self.buf = buf[4:]  # alignment counts from after the header
        self.pos = 0

    def _align(self, n: int) -> None:
        self.pos += (-self.pos) % n

    def _need(self, n: int, what: str) -> None:
        if n > len(self.buf) - self.pos:
            raise CdrError(f"{what} needs {n} bytes at offset {self.pos + 4}, "
                           f"{max(len(self.buf) - self.pos, 0)} are left")

    def u32(self, what: str) -> int:
        self._align(4)
        self._need(4, what)
        v = struct.unpack_from(self.endian + "I", self.buf, self.pos)[0]
        self.pos += 4
        return int(v)

    def i32(self, what: str) -> int:
        v = self.u32(what)
        return v - (1 << 32) if v >= 1 << 31 else v

    def u8(self, what: str) -> int:
        self._need(1, what)
        v = self.buf[self.pos]
        self.pos += 1
        return int(v)

    def string(self, what: str) -> str:
        n = self.u32(what + " length")
        self._need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.rstrip(b"\x00").decode("utf-8", "replace")

    def octets(self, what: str) -> memoryview:
        n = self.u32(what + " length")
        self._need(n, what)
        view = self.buf[self.pos:self.pos + n]
        self.pos += n
        return view


def decode_image(type_name: str, data: Union[bytes, memoryview]) -> Dict[str, object]:
    """A ``sensor_msgs/msg/Image`` or ``foxglove_msgs/msg/RawImage`` as a
    dict: timestamp_ns, frame_id, width, height, encoding, step,
    is_bigendian, data (memoryview)."""
    r = _Reader(data)
    sec = r.i32("stamp.sec")
    nsec = r.u32("stamp.nanosec")
    frame_id = r.string("frame_id")
    out: Dict[str, object] = {"timestamp_ns": sec * 1_000_000_000 + nsec, "frame_id": frame_id,
                              "is_bigendian": 0}
    if type_name == SENSOR_IMAGE:
        out["height"] = r.u32("height")
        out["width"] = r.u32("width")
        out["encoding"] = r.string("encoding")
        out["is_bigendian"] = r.u8("is_bigendian")
    elif type_name == FOXGLOVE_RAW_IMAGE:
        out["width"] = r.u32("width")
        out["height"] = r.u32("height")
        out["encoding"] = r.string("encoding")
    else:
        raise CdrError(f"no CDR decoder for {type_name!r} (only {', '.join(IMAGE_TYPES)})")
    out["step"] = r.u32("step")
    out["data"] = r.octets("data")
    return out


def encode_sensor_image(stamp_ns: int, frame_id: str, height: int, width: int, encoding: str,
                        step: int, data: bytes, big_endian_data: bool = False) -> bytes:
    """A little-endian CDR ``sensor_msgs/msg/Image`` (used by tests and as
    the reference layout for the decoder)."""
    out = bytearray(b"\x00\x01\x00\x00")

    def align(n: int) -> None:
        out.extend(b"\x00" * ((-(len(out) - 4)) % n))

    def u32(v: int) -> None:
        align(4)
        out.extend(struct.pack("<I", v))

    def string(s: str) -> None:
        raw = s.encode() + b"\x00"
        u32(len(raw))
        out.extend(raw)

    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    u32(sec & 0xFFFFFFFF)
    u32(nsec)
    string(frame_id)
    u32(height)
    u32(width)
    string(encoding)
    out.append(1 if big_endian_data else 0)
    u32(step)
    u32(len(data))
    out.extend(data)
    return bytes(out)


__all__ = ["CdrError", "decode_image", "encode_sensor_image", "SENSOR_IMAGE", "FOXGLOVE_RAW_IMAGE",
           "IMAGE_TYPES"]
