"""``shmx bridge out|in``: regions beyond one machine, over Zenoh
(shmx/bridge.py does the work; zenoh is imported only when one runs).

    shmx bridge out NAME --key KEY [zenoh options]   publish region NAME's frames
    shmx bridge in KEY --as NAME [zenoh options]     mirror them as local region NAME
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any, Callable

from .util import EXIT_FAILURE, EXIT_OK, CliError, check_name, shm_dir_of


def register(add: Callable[[str, str, str], argparse.ArgumentParser],
             positive_float: Callable[[str], float]) -> None:
    """Add the ``bridge`` command to the ``shmx`` parser (``add`` is
    build_parser's helper)."""
    p = add("bridge", "carry a region to other machines over Zenoh",
            "Publish a region's frames on Zenoh ('out'), or mirror frames published under a key "
            "as a local region ('in'). Needs the optional extra: pip install 'shmx[bridge]'.")
    sub = p.add_subparsers(dest="bridge_command", metavar="DIRECTION", parser_class=type(p))
    sub.required = True

    def zenoh_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", metavar="DIR", default=argparse.SUPPRESS,
                       help="shared-memory directory (default: $SHMX_DIR or /dev/shm)")
        q.add_argument("--config", metavar="FILE", default=None,
                       help="Zenoh configuration file (JSON5, Zenoh's own format)")
        q.add_argument("--listen", metavar="ENDPOINT", action="append", default=[],
                       help="endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable)")
        q.add_argument("--connect", metavar="ENDPOINT", action="append", default=[],
                       help="endpoint to connect to, e.g. tcp/192.168.1.10:7447 (repeatable)")
        q.add_argument("--mode", choices=("peer", "client"), default=None,
                       help="Zenoh session mode (default: the config's, else peer)")
        q.add_argument("--no-multicast", action="store_true",
                       help="turn multicast scouting off (only the endpoints given are used)")
        q.add_argument("--delivery", choices=("latest", "reliable"), default="latest",
                       help="latest: drop old frames, best effort (default); reliable: every frame "
                            "in order, gaps carried as the source saw them")
        q.add_argument("--seconds", type=positive_float, default=None, metavar="S",
                       help="stop after S seconds (default: until Ctrl-C or SIGTERM)")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
        q.add_argument("--json", action="store_true", help="print the final statistics as JSON")

    q = sub.add_parser("out", help="publish a local region's frames on Zenoh",
                       description="Read every frame of local region NAME and publish it on Zenoh "
                                   "under KEY (KEY/frames), with its schema (queryable KEY/schema) "
                                   "and liveliness tokens (KEY/alive/*). Waits for the region to "
                                   "appear, and follows a new server that takes the name.")
    q.add_argument("name", help="local region name")
    q.add_argument("--key", required=True, help="Zenoh key expression, e.g. robot1/cam")
    zenoh_options(q)
    q.set_defaults(func=cmd_bridge_out)

    q = sub.add_parser("in", help="mirror frames from Zenoh as a local region",
                       description="Subscribe to the frames published under KEY by 'shmx bridge out' "
                                   "and publish them into local region NAME (same schema, frame ids, "
                                   "sim_time and bytes). Local consumers read NAME with the ordinary "
                                   "Client API. While the source or the bridge is gone the region "
                                   "is closed (its name kept); it comes back with them.")
    q.add_argument("key", help="Zenoh key expression given to 'shmx bridge out --key'")
    q.add_argument("--as", dest="as_name", required=True, metavar="NAME", help="local region to create")
    q.add_argument("--slots", type=int, default=None, help="frame slots of the mirror (default: the source's)")
    zenoh_options(q)
    q.set_defaults(func=cmd_bridge_in)


def _bridge_module() -> Any:
    try:
        from .. import bridge
    except ImportError as exc:
        raise CliError(f"shmx bridge needs Zenoh: pip install 'shmx[bridge]' ({exc})") from None
    return bridge


def _common(args: argparse.Namespace) -> dict:
    return {"delivery": args.delivery, "config": args.config, "listen": args.listen,
            "connect": args.connect, "mode": args.mode,
            "multicast_scouting": False if args.no_multicast else None,
            "shm_dir": shm_dir_of(args),
            "log": None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))}


def _run(make: Callable[[], Any], args: argparse.Namespace, what: str) -> int:
    bridge = None
    try:
        bridge = make()
    except ValueError as exc:
        raise CliError(f"{what}: {exc}") from None
    except Exception as exc:  # zenoh.ZError: e.g. the listen port is taken
        raise CliError(f"{what}: zenoh: {exc}") from None
    # SIGTERM ends the run like Ctrl-C, so the mirror and the tokens go cleanly.
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop_soon())
    started = time.monotonic()
    try:
        stats = bridge.run(args.seconds)
    except KeyboardInterrupt:
        stats = dict(bridge.stats)
    finally:
        bridge.close()
    stats["seconds"] = round(time.monotonic() - started, 3)
    if args.json:
        print(json.dumps(stats, sort_keys=True))
    else:
        print(f"{what}: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
    return EXIT_OK


def cmd_bridge_out(args: argparse.Namespace) -> int:
    check_name(args.name)
    mod = _bridge_module()
    return _run(lambda: mod.BridgeOut(args.name, args.key, **_common(args)), args, "bridge out")


def cmd_bridge_in(args: argparse.Namespace) -> int:
    check_name(args.as_name)
    if args.slots is not None and args.slots < 1:
        raise CliError("bridge in: --slots must be at least 1")
    mod = _bridge_module()
    return _run(lambda: mod.BridgeIn(args.key, args.as_name, slots=args.slots, **_common(args)),
                args, "bridge in")


__all__ = ["register", "cmd_bridge_out", "cmd_bridge_in", "EXIT_FAILURE"]
