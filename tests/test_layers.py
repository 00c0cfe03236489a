"""Python never touches the wire format: no module of the package reads the
region's bytes by offset, decodes its records or computes its framing.
Whatever the Python layer needs of the region is a C call in shmx.h.

The check reads every module's syntax tree.  A region view is the
memoryview over a handle's mapping (``_mv``) or anything made from
``shmx_*_base()``; reading one with ``struct``/``int.from_bytes``, indexing
it at a constant, or defining framing constants (``*_TLV*``, ``*_FRAMING*``,
``*_HEADER*`` integers) is refused.  A file format of our own (a
recording) is not the region and may be decoded.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import List

PACKAGE = Path(__file__).resolve().parent.parent / "shmx"
READERS = {"unpack_from", "unpack", "iter_unpack", "from_bytes"}
REGION_HINTS = ("_mv", "shmx_server_base", "shmx_client_base", "shmx_inspector_base")


def _mentions_region(node: ast.AST) -> bool:
    src = ast.unparse(node)
    return any(hint in src for hint in REGION_HINTS)


def _is_view(node: ast.AST) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name.endswith("_mv")


def violations(source: str, filename: str = "<src>") -> List[str]:
    tree = ast.parse(source, filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in READERS and any(_mentions_region(a) for a in node.args):
                found.append(f"{filename}:{node.lineno}: reads region bytes: {ast.unparse(node)}")
        elif isinstance(node, ast.Subscript) and _is_view(node.value):
            sl = node.slice
            bounds = [sl.lower, sl.upper] if isinstance(sl, ast.Slice) else [sl]
            if any(isinstance(b, ast.Constant) and isinstance(b.value, int) for b in bounds):
                found.append(f"{filename}:{node.lineno}: indexes a region view at a constant: "
                             f"{ast.unparse(node)}")
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Name) and isinstance(node.value, ast.Constant)
                        and isinstance(node.value.value, int) and not isinstance(node.value.value, bool)
                        and any(w in target.id.upper() for w in ("TLV", "FRAMING", "HEADER"))):
                    found.append(f"{filename}:{node.lineno}: a framing constant: {ast.unparse(node)}")
    return found


def test_the_check_catches_what_it_forbids() -> None:
    bad = '''
import struct
_TLV_HEAD = 24
class S:
    def f(self):
        cap = struct.unpack_from("<I", self._mv, 72)[0]
        used = int.from_bytes(self._mv[56:60], "little")
        head = self._mv[0]
'''
    found = violations(bad)
    assert {int(f.split(":")[1]) for f in found} == {3, 6, 7, 8}, found
    good = '''
import struct
FRAME_FIXED = struct.Struct("<QdQQI")        # a recording's own block, not the region
def g(self, off, n, body):
    view = self._mv[off:off + n]             # a loan: the offset came from C
    return FRAME_FIXED.unpack_from(body, 0)
'''
    assert violations(good) == []


def test_no_module_reads_the_region_by_offset() -> None:
    found: List[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += violations(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, "Python reads the wire format; make it a C call:\n" + "\n".join(found)
