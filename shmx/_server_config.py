"""create()'s arguments as a ``shmx_server_config``: every value checked
(type, range, a stream name without NUL) before C sees it, so a bad one
is a clear ``TypeError``/``ValueError``/``KeyError`` naming it."""
from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional

from ._common import CHECKSUM_POLICIES, encode_dir
from ._shmx import ffi, lib


def server_config(slots: int, reader_slots: int, static_bytes_cap: int, frame_bytes_cap: int,
            control_per_reader: int, streams: Iterable[Mapping[str, Any]], mode: int,
            checksum: str, shm_dir: Optional[str]) -> Any:
    if checksum not in CHECKSUM_POLICIES:
        raise ValueError(f"checksum must be one of {sorted(CHECKSUM_POLICIES)}, not {checksum!r}")
    for label, v in (("slots", slots), ("reader_slots", reader_slots),
                     ("static_bytes_cap", static_bytes_cap),
                     ("frame_bytes_cap", frame_bytes_cap),
                     ("control_per_reader", control_per_reader), ("mode", mode)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{label} must be an int, not {type(v).__name__}")
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError(f"{label} {v} is out of range 0..2**32-1")
    cfg = ffi.new("shmx_server_config *")
    lib.shmx_server_config_init(cfg)
    cfg.slots, cfg.reader_slots = slots, reader_slots
    cfg.static_bytes_cap, cfg.frame_bytes_cap = static_bytes_cap, frame_bytes_cap
    cfg.control_per_reader, cfg.mode = control_per_reader, mode
    cfg.checksum = CHECKSUM_POLICIES[checksum]
    specs = list(streams or [])
    keep: List[Any] = []
    arr = ffi.new("shmx_stream_spec[]", max(len(specs), 1))
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping):
            raise TypeError(f"stream {i} must be a dict from create_stream_spec()")
        for key in ("id", "name", "dtype_code", "components", "bytes_per_elem"):
            if key not in spec:
                raise KeyError(f"stream {i} has no '{key}'")
        name = spec["name"]
        if not isinstance(name, (str, bytes)):
            raise TypeError(f"stream {i}: name must be a str, got {type(name).__name__}")
        raw = name.encode("utf-8") if isinstance(name, str) else bytes(name)
        if b"\0" in raw:
            raise ValueError(f"stream {i}: name {name!r} contains a NUL character")
        label = f"stream {name!r}" if isinstance(name, str) else f"stream {i}"
        for key, field in (("id", "stream id"), ("dtype_code", "dtype_code"),
                           ("components", "components"), ("bytes_per_elem", "bytes_per_elem"),
                           ("layout_code", "layout_code")):
            v = spec.get(key, 0) if key == "layout_code" else spec[key]
            if v is None and key == "layout_code":
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{label}: {field} must be an int, got {type(v).__name__} {v!r}")
            if not 0 <= v <= 0xFFFFFFFF:
                raise ValueError(f"{label}: {field} {v} is out of range 0..2**32-1")
        nm = ffi.new("char[]", raw)
        keep.append(nm)
        a = arr[i]
        a.stream_id = spec["id"]
        a.dtype = spec["dtype_code"]
        a.components = spec["components"]
        a.layout = spec.get("layout_code", 0) or 0
        a.bytes_per_elem = spec["bytes_per_elem"]
        a.name = nm
        extra = spec.get("extra")
        if spec.get("shape") is not None:
            from ._shape import check_shape, encode_shape
            dims = check_shape("create", str(name), spec["shape"], int(spec["components"]))
            extra = encode_shape(dims, bytes(extra or b""))
        if extra:
            eb = ffi.new("char[]", bytes(extra))
            keep.append(eb)
            a.extra = eb
            a.extra_len = len(bytes(extra))
    cfg.streams = arr
    cfg.stream_count = len(specs)
    keep.append(arr)
    if shm_dir is not None:
        d = ffi.new("char[]", encode_dir(shm_dir))
        keep.append(d)
        cfg.dir = d
    return cfg, keep
