"""Benchmark worker for Eclipse eCAL (pip package ``eclipse-ecal``, the
nanobind core API of eCAL 6).

Mode: the shared-memory transport layer only (UDP and TCP layers switched
off), registration through shared memory too, so nothing leaves the machine;
otherwise eCAL's defaults (one memory file per publisher, copy mode, no
acknowledgement: a slow subscriber misses messages).  The Python API
delivers messages to a callback on eCAL's receive thread, so there is no
busy-poll mode; the callback takes the receipt time, and the measured loop
runs on the main thread.  ``Publisher.send`` takes ``bytes`` only, so a large
numpy frame is turned into bytes first (that copy is part of its publish cost).
"""
from __future__ import annotations

import collections
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import now_ns  # noqa: E402

import ecal.nanobind_core as ecal  # noqa: E402

PUBLISHER, SUBSCRIBER = 0x01, 0x02


def _init(cfg, unit):
    conf = ecal.Configuration()
    conf.registration.local.transport_type = ecal.LocalTransportType.SHM
    # Our own names for eCAL's shared-memory files, so the driver can remove
    # whatever a killed process leaves behind.
    conf.registration.local.shm.domain = cfg["name"] + "-ecalmon"
    conf.registration.shm_transport_domain = cfg["name"] + "-ecaldom"
    conf.registration.registration_refresh = 100
    conf.logging.provider.console.enable = False
    conf.publisher.layer.udp.enable = False
    conf.publisher.layer.tcp.enable = False
    conf.publisher.layer.shm.enable = True
    if not ecal.initialize(conf, unit, PUBLISHER | SUBSCRIBER):
        raise RuntimeError("ecal initialize failed")


class Sender:
    lossy = True

    def __init__(self, cfg):
        _init(cfg, f"shmxbench_pub_{os.getpid()}")
        self.pub = ecal.Publisher(cfg["name"])
        send = self.pub.send
        self.send = send

        def send_big(src):
            send(src.tobytes() if hasattr(src, "tobytes") else bytes(src))

        self.send_big = send_big
        self.info = {"mode": "Publisher.send(bytes), SHM layer only"}

    def close(self):
        self.pub = None
        ecal.finalize()


class Receiver:
    can_poll = False
    can_block = True
    no_poll_reason = "eCAL's Python API delivers by callback only (no busy-poll receive)"

    def __init__(self, cfg):
        _init(cfg, f"shmxbench_sub_{os.getpid()}_{cfg.get('idx', 0)}")
        big = cfg["scenario"] == "big"
        # A consumer that falls behind loses the oldest messages, as eCAL's
        # own shared-memory layer does.
        self.q = collections.deque(maxlen=4 if big else 100000)
        self.cv = threading.Condition()
        self.stamp = 0
        self.dropped = None
        q, cv = self.q, self.cv

        def on_message(_topic, _dtype, data):
            t = now_ns()
            with cv:
                q.append((t, data.buffer))
                cv.notify()

        self.sub = ecal.Subscriber(cfg["name"])
        self.sub.set_receive_callback(on_message)

        def wait(timeout):
            with cv:
                if not q and not cv.wait(timeout):
                    return None
                if not q:
                    return None
                t, buf = q.popleft()
            self.stamp = t
            return buf

        self.wait = wait
        self.info = {"mode": "Subscriber receive callback (eCAL thread) -> main thread"}

    def release(self):
        return True

    def close(self):
        try:
            self.sub.remove_receive_callback()
        except Exception:
            pass
        self.sub = None
        ecal.finalize()


def probe():
    return {"version": ecal.get_version_string()}


if __name__ == "__main__":
    common.main(Sender, Receiver, probe)
