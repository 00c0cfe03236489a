"""Build hook: cffi compiles csrc/*.c into the extension shmx._shmx
(bindings/build_ffi.py: the build stays out of the package it builds).

cffi compiles the extension against CPython's limited API (Py_LIMITED_API)
wherever the interpreter has one, so the wheel is tagged ``cp38-abi3``: one
wheel serves every CPython >= 3.8. Debug and free-threaded interpreters
build a version-specific extension, and their wheel keeps its own tag.
"""
import sys
import sysconfig

from setuptools import setup

options = {}
_limited_api = not hasattr(sys, "gettotalrefcount") and not sysconfig.get_config_var("Py_GIL_DISABLED")
if _limited_api and sys.implementation.name == "cpython":
    options["bdist_wheel"] = {"py_limited_api": "cp38"}

setup(cffi_modules=["bindings/build_ffi.py:ffibuilder"], options=options)
