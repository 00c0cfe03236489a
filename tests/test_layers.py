"""Python never touches the wire format: no module of the package reads the
region's bytes by offset, decodes its records or computes its framing.
Whatever the Python layer needs of the region is a C call in shmx.h.

The check reads every module's syntax tree.  A region view is the
memoryview over a handle's mapping (``_mv``) or anything made from
``shmx_*_base()``; reading one with ``struct``/``int.from_bytes``, indexing
it at a constant, or defining framing constants (``*_TLV*``, ``*_FRAMING*``,
``*_HEADER*`` integers) is refused.  A file format of our own (a
recording) is not the region and may be decoded.

The package shows its layers: ``shmx/cli/`` is the command, a user of the
library like any other program, so no module of the library (anything in
``shmx/`` outside ``shmx/cli/``) imports it, at the top or inside a
function, absolutely, relatively or through ``importlib``.  The one
exception is ``shmx/__main__.py``: ``python -m shmx`` is the command's
entry point, and nothing imports it.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Optional

PACKAGE = Path(__file__).resolve().parent.parent / "shmx"
CLI = "shmx.cli"
ENTRY_POINTS = {"shmx/__main__.py"}  # python -m shmx: the command's own entry
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


def test_the_scan_covers_subpackages() -> None:
    scanned = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")}
    assert {"shmx/server.py", "shmx/cli/__init__.py", "shmx/cli/mcap_play.py"} <= scanned, scanned


# ------------------------------------------------- the library and the command
def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    """``shmx/cli/util.py`` -> ``shmx.cli.util``; ``shmx/__init__.py`` -> ``shmx``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, target: Optional[str]) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base.pop()  # a plain module's dots count from the package holding it
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple]:
    """(line, absolute module name) of every import in the tree, function
    bodies included; ``from X import a`` yields X and X.a (``a`` may be a
    submodule), ``importlib.import_module("...")``/``__import__("...")`` with
    a constant name yield that name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            arg = node.args[0].value
            if name in ("import_module", "__import__") and isinstance(arg, str):
                level = len(arg) - len(arg.lstrip("."))
                yield node.lineno, (_resolve(module, is_package, level, arg[level:] or None)
                                    if level else arg)


def cli_imports(source: str, module: str, is_package: bool = False, filename: str = "<src>") -> List[str]:
    """Where ``source`` (the text of module ``module``) imports shmx.cli or a module of it."""
    tree = ast.parse(source, filename)
    return [f"{filename}:{line}: imports {name}" for line, name in _imported(tree, module, is_package)
            if name == CLI or name.startswith(CLI + ".")]


def test_the_layer_check_catches_every_way_in() -> None:
    bad = {  # each plants one import of the command into shmx/bridge.py
        "import shmx.cli": 1,
        "import shmx.cli.util as u": 1,
        "from shmx import cli": 1,
        "from shmx.cli.mcap import encode_stream": 1,
        "from . import cli": 1,
        "from .cli import main": 1,
        "from .cli.record import parse_size": 1,
        "def f():\n    from .cli import util\n    return util": 2,
        "class K:\n    def m(self):\n        import shmx.cli.top": 3,
        "import importlib\nmod = importlib.import_module('shmx.cli.top')": 2,
        "import importlib\nmod = importlib.import_module('.cli.demo', __package__)": 2,
        "mod = __import__('shmx.cli')": 1,
    }
    for source, line in bad.items():
        found = cli_imports(source, "shmx.bridge")
        assert found and all(f.split(":")[1] == str(line) for f in found), (source, found)
    # Two dots from a subpackage reach shmx.cli too; from shmx/__init__.py one does.
    assert cli_imports("from ..cli import util", "shmx.sub.mod")
    assert cli_imports("from .cli import main", "shmx", is_package=True)
    good = [
        "from . import client, server",
        "from .client import Client",
        "import shmx.client",
        "from shmx import clients",          # a name that only starts like it
        "import shmx.client_cli",
        "from .. import cli",                 # from shmx/x.py: above the package
    ]
    assert [s for s in good if cli_imports(s, "shmx.bridge")] == []
    # Inside the command, "from . import bridge" is shmx.cli.bridge (the
    # scan below leaves shmx/cli/ out; here it shows the dots are resolved).
    assert cli_imports("from . import bridge", "shmx.cli.demo")
    assert not cli_imports("from .. import bridge", "shmx.cli.bridge")
    assert module_name(PACKAGE / "cli" / "__init__.py") == "shmx.cli"
    assert module_name(PACKAGE / "cli" / "util.py") == "shmx.cli.util"


def test_no_library_module_imports_the_command() -> None:
    found: List[str] = []
    library = [p for p in sorted(PACKAGE.rglob("*.py"))
               if (PACKAGE / "cli") not in p.parents
               and str(p.relative_to(PACKAGE.parent)) not in ENTRY_POINTS]
    assert len(library) >= 10 and PACKAGE / "bridge.py" in library, library
    for path in library:
        found += cli_imports(path.read_text(), module_name(path), path.name == "__init__.py",
                             str(path.relative_to(PACKAGE.parent)))
    assert not found, "the library imports the command (shmx/cli/):\n" + "\n".join(found)
