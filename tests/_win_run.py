"""Run a module (``python _win_run.py OUT MODULE ARGS...``) or code
(``python _win_run.py OUT -c CODE``) with stdout and stderr going to the
file OUT.

For the Windows CPython under wine: wine 8 hands a program started from
Linux with a regular file or a pipe as a standard handle something the
Universal CRT rejects ("init_sys_streams: Invalid handle"), so the driver
(tests/_wine.py) starts it on a pseudo-terminal and reads the output from
this file instead.  Processes that the program starts itself get real
Windows pipes and are not affected.
"""
import runpy
import sys

out = open(sys.argv[1], "w", buffering=1, encoding="utf-8", errors="replace")
sys.stdout = sys.stderr = out
sys.argv = sys.argv[2:]
try:
    if sys.argv[0] == "-c":
        exec(compile(sys.argv[1], "<-c>", "exec"), {"__name__": "__main__"})
    else:
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
    out.flush()
    raise SystemExit(code)
