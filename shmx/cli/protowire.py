"""The few protobuf pieces MCAP recordings need, with the standard library
only: wire-format encoding of the messages shmx writes (``foxglove.RawImage``
and shmx's own frame and stream messages), their schemas as serialized
``google.protobuf.FileDescriptorSet`` bytes (what an MCAP ``protobuf``
schema record and a Foxglove WebSocket channel carry), and a bounds-checked
decoder for reading such messages back, from our files or from other tools.

Why protobuf: Foxglove decodes it without plugins, the schema travels in
the file, and a packed ``repeated float``/``double``/``fixed32``... field is
exactly the little-endian array a stream holds, so a stream's bytes go into
a message unchanged and come back out byte for byte.
"""
from __future__ import annotations

import struct
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

# ------------------------------------------------------------- wire format
WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5


class ProtoError(ValueError):
    """A protobuf message that does not decode (truncated, bad tag...)."""


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


def field_varint(field: int, value: int) -> bytes:
    return tag(field, WIRE_VARINT) + varint(value)


def field_len(field: int, payload: bytes) -> bytes:
    return tag(field, WIRE_LEN) + varint(len(payload)) + payload


def field_len_head(field: int, length: int) -> bytes:
    """Tag and length of a length-delimited field whose body follows."""
    return tag(field, WIRE_LEN) + varint(length)


def field_fixed32(field: int, value: int) -> bytes:
    return tag(field, WIRE_I32) + struct.pack("<I", value)


def field_double(field: int, value: float) -> bytes:
    return tag(field, WIRE_I64) + struct.pack("<d", value)


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _read_varint(buf: memoryview, pos: int) -> Tuple[int, int]:
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ProtoError("varint runs past the end of the message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtoError("varint longer than 10 bytes")


def iter_fields(data: bytes | memoryview) -> Iterator[Tuple[int, int, object]]:
    """(field number, wire type, value) for each field: an int for varint
    and fixed fields, a memoryview (no copy) for length-delimited ones.
    Every length is checked against what is left of ``data``."""
    buf = memoryview(data).cast("B")
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ProtoError("field number 0")
        if wire == WIRE_VARINT:
            value, pos = _read_varint(buf, pos)
            yield field, wire, value
        elif wire == WIRE_I64:
            if pos + 8 > end:
                raise ProtoError("fixed64 field runs past the end of the message")
            yield field, wire, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == WIRE_I32:
            if pos + 4 > end:
                raise ProtoError("fixed32 field runs past the end of the message")
            yield field, wire, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        elif wire == WIRE_LEN:
            length, pos = _read_varint(buf, pos)
            if length > end - pos:
                raise ProtoError(f"field {field} claims {length} bytes, {end - pos} are left")
            yield field, wire, buf[pos:pos + length]
            pos += length
        else:
            raise ProtoError(f"unsupported wire type {wire} (field {field})")


def decode_fields(data: bytes | memoryview) -> Dict[int, object]:
    """The last value of every field (protobuf's rule for singular fields)."""
    return {f: v for f, _w, v in iter_fields(data)}


# ------------------------------------------------------------ descriptors
# google/protobuf/descriptor.proto: FieldDescriptorProto.Type and .Label.
T_DOUBLE, T_FLOAT, T_INT64, T_UINT64, T_INT32, T_FIXED64, T_FIXED32, T_BOOL = 1, 2, 3, 4, 5, 6, 7, 8
T_STRING, T_MESSAGE, T_BYTES, T_UINT32, T_SFIXED32, T_SFIXED64, T_SINT32 = 9, 11, 12, 13, 15, 16, 17
L_OPTIONAL, L_REPEATED = 1, 3

Field = Tuple[str, int, int, int, str]  # name, number, label, type, type_name


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _field_proto(f: Field) -> bytes:
    name, number, label, ftype, type_name = f
    out = field_len(1, name.encode()) + field_varint(3, number) + field_varint(4, label)
    out += field_varint(5, ftype)
    if type_name:
        out += field_len(6, type_name.encode())
    return out + field_len(10, _json_name(name).encode())


def _file_proto(filename: str, package: str, messages: Sequence[Tuple[str, Sequence[Field]]],
                deps: Sequence[str] = ()) -> bytes:
    out = field_len(1, filename.encode()) + field_len(2, package.encode())
    for d in deps:
        out += field_len(3, d.encode())
    for msg_name, fields in messages:
        body = field_len(1, msg_name.encode()) + b"".join(field_len(2, _field_proto(f)) for f in fields)
        out += field_len(4, body)
    return out + field_len(12, b"proto3")


def file_descriptor_set(files: Sequence[bytes]) -> bytes:
    """A FileDescriptorSet of serialized FileDescriptorProtos, dependencies first."""
    return b"".join(field_len(1, f) for f in files)


_TIMESTAMP_FILE = _file_proto("google/protobuf/timestamp.proto", "google.protobuf", [
    ("Timestamp", [("seconds", 1, L_OPTIONAL, T_INT64, ""), ("nanos", 2, L_OPTIONAL, T_INT32, "")])])

# foxglove/RawImage.proto as published in Foxglove's schemas (field numbers
# are the wire contract).
RAW_IMAGE_NAME = "foxglove.RawImage"
_RAW_IMAGE_FILE = _file_proto("foxglove/RawImage.proto", "foxglove", [("RawImage", [
    ("timestamp", 1, L_OPTIONAL, T_MESSAGE, ".google.protobuf.Timestamp"),
    ("frame_id", 7, L_OPTIONAL, T_STRING, ""),
    ("width", 2, L_OPTIONAL, T_FIXED32, ""),
    ("height", 3, L_OPTIONAL, T_FIXED32, ""),
    ("encoding", 4, L_OPTIONAL, T_STRING, ""),
    ("step", 5, L_OPTIONAL, T_FIXED32, ""),
    ("data", 6, L_OPTIONAL, T_BYTES, ""),
])], deps=["google/protobuf/timestamp.proto"])
RAW_IMAGE_SCHEMA = file_descriptor_set([_TIMESTAMP_FILE, _RAW_IMAGE_FILE])

# shmx.Frame: one per recorded frame, written before the frame's streams.
FRAME_NAME = "shmx.Frame"
F_FRAME_ID, F_SIM_TIME, F_DROPPED, F_STREAM_IDS, F_ELEM_COUNTS = 1, 2, 3, 4, 5
FRAME_SCHEMA = file_descriptor_set([_file_proto("shmx/Frame.proto", "shmx", [("Frame", [
    ("frame_id", F_FRAME_ID, L_OPTIONAL, T_UINT64, ""),
    ("sim_time", F_SIM_TIME, L_OPTIONAL, T_DOUBLE, ""),
    ("dropped", F_DROPPED, L_OPTIONAL, T_UINT64, ""),
    ("stream_ids", F_STREAM_IDS, L_REPEATED, T_UINT32, ""),
    ("elem_counts", F_ELEM_COUNTS, L_REPEATED, T_UINT32, ""),
])])])

# shmx.Stream*: one message type per value type.  ``values`` is packed;
# for the fixed-width types it *is* the stream's bytes.  Types without a
# fixed-width protobuf twin (8/16-bit ints, bool, half floats, opaque
# elements) keep their exact bytes in ``raw`` and, for small streams, also
# get ``values`` as numbers so Foxglove can plot them.
S_FRAME_ID, S_SIM_TIME, S_ELEM_COUNT, S_COMPONENTS, S_VALUES, S_RAW = 1, 2, 3, 4, 5, 6


def stream_schema(type_name: str, value_type: Optional[int]) -> bytes:
    """The FileDescriptorSet of ``shmx.<type_name>``."""
    fields: List[Field] = [
        ("frame_id", S_FRAME_ID, L_OPTIONAL, T_UINT64, ""),
        ("sim_time", S_SIM_TIME, L_OPTIONAL, T_DOUBLE, ""),
        ("elem_count", S_ELEM_COUNT, L_OPTIONAL, T_UINT32, ""),
        ("components", S_COMPONENTS, L_OPTIONAL, T_UINT32, ""),
    ]
    if value_type is not None:
        fields.append(("values", S_VALUES, L_REPEATED, value_type, ""))
    fields.append(("raw", S_RAW, L_OPTIONAL, T_BYTES, ""))
    return file_descriptor_set([_file_proto(f"shmx/{type_name}.proto", "shmx", [(type_name, fields)])])


def descriptor_messages(fds: bytes | memoryview) -> Dict[str, List[Tuple[str, int, int, int]]]:
    """``{"package.Message": [(field name, number, label, type), ...]}`` of a
    FileDescriptorSet: enough to check a schema by its field numbers."""
    out: Dict[str, List[Tuple[str, int, int, int]]] = {}
    for f, _w, file_bytes in iter_fields(fds):
        if f != 1 or not isinstance(file_bytes, memoryview):
            continue
        package = ""
        messages = []
        for ff, _ww, v in iter_fields(file_bytes):
            if ff == 2 and isinstance(v, memoryview):
                package = bytes(v).decode()
            elif ff == 4 and isinstance(v, memoryview):
                messages.append(v)
        for m in messages:
            name, fields = "", []
            for mf, _mw, mv in iter_fields(m):
                if mf == 1 and isinstance(mv, memoryview):
                    name = bytes(mv).decode()
                elif mf == 2 and isinstance(mv, memoryview):
                    d = decode_fields(mv)
                    fields.append((bytes(d.get(1, b"")).decode(), int(d.get(3, 0)),  # type: ignore
                                   int(d.get(4, 0)), int(d.get(5, 0))))  # type: ignore[arg-type]
            out[f"{package}.{name}" if package else name] = fields
    return out


# ---------------------------------------------------------------- messages
def timestamp(ns: int) -> bytes:
    """A google.protobuf.Timestamp body for ``ns`` nanoseconds since the epoch."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    out = b""
    if seconds:
        out += field_varint(1, seconds & 0xFFFFFFFFFFFFFFFF)
    if nanos:
        out += field_varint(2, nanos)
    return out


def raw_image_head(stamp_ns: int, frame_id: str, width: int, height: int, encoding: str,
                   step: int, data_len: int) -> bytes:
    """A foxglove.RawImage message up to its pixel bytes: the ``data``
    field comes last, so the message is this head followed by the pixels."""
    return (field_len(1, timestamp(stamp_ns)) + field_len(7, frame_id.encode())
            + field_fixed32(2, width) + field_fixed32(3, height) + field_len(4, encoding.encode())
            + field_fixed32(5, step) + field_len_head(6, data_len))


def decode_raw_image(data: bytes | memoryview) -> Dict[str, object]:
    """A foxglove.RawImage message as a dict (``data`` a memoryview)."""
    d = decode_fields(data)
    stamp = d.get(1)
    ns = 0
    if isinstance(stamp, memoryview):
        t = decode_fields(stamp)
        secs = int(t.get(1, 0))  # type: ignore[arg-type]
        if secs >= 1 << 63:
            secs -= 1 << 64
        ns = secs * 1_000_000_000 + int(t.get(2, 0))  # type: ignore[arg-type]
    def text(v: object) -> str:
        return bytes(v).decode("utf-8", "replace") if isinstance(v, memoryview) else ""
    pixels = d.get(6)
    return {"timestamp_ns": ns, "frame_id": text(d.get(7)), "width": int(d.get(2, 0)),  # type: ignore
            "height": int(d.get(3, 0)), "encoding": text(d.get(4)),  # type: ignore[arg-type]
            "step": int(d.get(5, 0)),  # type: ignore[arg-type]
            "data": pixels if isinstance(pixels, memoryview) else memoryview(b"")}


__all__ = ["ProtoError", "RAW_IMAGE_NAME", "RAW_IMAGE_SCHEMA", "FRAME_NAME", "FRAME_SCHEMA",
           "stream_schema", "raw_image_head", "decode_raw_image", "iter_fields", "decode_fields",
           "descriptor_messages", "varint", "zigzag"]
