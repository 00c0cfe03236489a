"""Build hook: cffi compiles csrc/*.c into the extension shmx._shmx."""
from setuptools import setup

setup(cffi_modules=["shmx/_build_ffi.py:ffibuilder"])
