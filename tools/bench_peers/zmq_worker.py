"""Benchmark worker for ZeroMQ (pip package ``pyzmq``) over ``ipc://``.

Mode: PUB/SUB on a Unix-domain ``ipc://`` endpoint (one publisher, any
number of subscribers, default high-water marks: a full queue drops).
Small messages are sent and received as bytes (copying is cheaper than
tracking); large frames are sent with ``copy=False`` and received with
``copy=False`` (zero-copy frames), as pyzmq's documentation advises for big
buffers.  Blocking: ``recv()``; busy-poll: ``poll(0)`` then ``recv(NOBLOCK)``
(cheaper than letting an empty ``recv(NOBLOCK)`` raise ``zmq.Again``).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

import zmq  # noqa: E402


def _endpoint(cfg):
    return f"ipc:///tmp/{cfg['name']}.ipc"


class Sender:
    lossy = True

    def __init__(self, cfg):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(_endpoint(cfg))
        sock = self.sock
        self.send = sock.send

        def send_big(src):
            sock.send(src, copy=False)

        self.send_big = send_big
        self.info = {"mode": "PUB socket, ipc://, send (copy=False for large frames)"}

    def close(self):
        self.sock.close(0)
        self.ctx.term()


class Receiver:
    can_poll = True
    can_block = True

    def __init__(self, cfg):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(_endpoint(cfg))
        self.stamp = 0
        self.dropped = None
        sock = self.sock
        big = cfg["scenario"] == "big"
        recv = sock.recv
        noblock = zmq.NOBLOCK
        again = zmq.Again

        if big:
            def get(flags):
                return recv(flags, copy=False).buffer
        else:
            def get(flags):
                return recv(flags)

        sock_poll = sock.poll

        def poll():
            # Socket.poll(0) first: an empty poll then costs about half of a
            # recv(NOBLOCK) that raises zmq.Again (1.6 against 3.0 us here).
            if not sock_poll(0):
                return None
            try:
                return get(noblock)
            except again:
                return None

        # Blocking receive: recv() sleeps in libzmq; the driver's loops ask
        # every 50 ms, which RCVTIMEO turns into an Again.
        sock.setsockopt(zmq.RCVTIMEO, 50)

        def wait(_timeout):
            try:
                return get(0)
            except again:
                return None

        self.poll = poll
        self.wait = wait
        self.info = {"mode": "SUB socket, poll(0) + recv(NOBLOCK) busy-poll"}
        self.block_info = {"mode": "SUB socket, blocking recv()"}

    def release(self):
        return True

    def close(self):
        self.sock.close(0)
        self.ctx.term()


def probe():
    return {"version": zmq.__version__, "libzmq": zmq.zmq_version()}


if __name__ == "__main__":
    common.main(Sender, Receiver, probe)
