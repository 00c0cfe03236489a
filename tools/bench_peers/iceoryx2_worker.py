"""Benchmark worker for iceoryx2 (pip package ``iceoryx2``).

Mode, as its documentation recommends for dynamic-size data: an IPC
publish-subscribe service of ``Slice[c_uint8]``; the producer loans an
uninitialised sample from its shared-memory data segment, writes the frame
into it (``ctypes.memmove`` / numpy), and sends it; the subscriber's
``receive()`` hands out the sample in place (zero copy).  Blocking: an event
service of the same name, the producer notifies after each send and the
consumer sleeps in a ``WaitSet`` attached to its listener.  Safe overflow
(the default) is on: a full subscriber buffer drops its oldest sample.
"""
from __future__ import annotations

import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

import iceoryx2 as iox2  # noqa: E402

try:
    from importlib.metadata import version as _dist_version
    VERSION = _dist_version("iceoryx2")
except Exception:  # pragma: no cover - metadata missing
    VERSION = "?"


def _node(cfg):
    iox2.set_log_level(iox2.LogLevel.Error)
    conf = iox2.config.default()
    # Our own file prefix: every file this run leaves in /dev/shm or /tmp is
    # recognisable and removed by the driver.
    conf.global_cfg.prefix = iox2.FileName.new(cfg["iox_prefix"])
    return (iox2.NodeBuilder.new().config(conf)
            .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
            .create(iox2.ServiceType.Ipc))


def _service(node, cfg):
    n = int(cfg.get("n_consumers", 1))
    big = cfg["scenario"] == "big"
    return (node.service_builder(iox2.ServiceName.new(cfg["name"]))
            .publish_subscribe(iox2.Slice[ctypes.c_uint8])
            .max_publishers(1)
            .max_subscribers(max(n, 1) + 1)
            .subscriber_max_buffer_size(2 if big else 64)
            .enable_safe_overflow(True)
            .open_or_create())


def _event(node, cfg):
    return node.service_builder(iox2.ServiceName.new(cfg["name"])).event().open_or_create()


class Sender:
    lossy = True

    def __init__(self, cfg):
        self.node = _node(cfg)
        self.svc = _service(self.node, cfg)
        size = int(cfg["frame_bytes"])
        self.pub = self.svc.publisher_builder().initial_max_slice_len(size).create()
        self.ev = _event(self.node, cfg)
        self.notifier = self.ev.notifier_builder().create()
        pub, notify, memmove = self.pub, self.notifier.notify, ctypes.memmove

        def send(msg):
            n = len(msg)
            sample = pub.loan_slice_uninit(n)
            memmove(sample.payload_ptr, msg, n)
            sample.assume_init().send()
            notify()

        def send_big(src):
            n = len(src)
            sample = pub.loan_slice_uninit(n)
            if common.np:
                memmove(sample.payload_ptr, src.ctypes.data, n)
            else:
                memmove(sample.payload_ptr, (ctypes.c_char * n).from_buffer(src), n)
            sample.assume_init().send()
            notify()

        self.send = send
        self.send_big = send_big
        self.info = {"mode": "loan_slice_uninit + write + send, then Notifier.notify (event service)"}

    def close(self):
        for attr in ("notifier", "ev", "pub", "svc"):
            obj = getattr(self, attr, None)
            if obj is not None and hasattr(obj, "delete"):
                try:
                    obj.delete()
                except Exception:
                    pass
        self.node = None


class Receiver:
    can_poll = True
    can_block = True

    def __init__(self, cfg):
        self.node = _node(cfg)
        self.svc = _service(self.node, cfg)
        self.sub = self.svc.subscriber_builder().create()
        self.ev = _event(self.node, cfg)
        self.listener = self.ev.listener_builder().create()
        self.waitset = iox2.WaitSetBuilder.new().create(iox2.ServiceType.Ipc)
        self.guard = self.waitset.attach_notification(self.listener)
        self.stamp = 0
        self.dropped = None
        self.sample = None
        receive = self.sub.receive
        u8 = ctypes.c_uint8

        def poll():
            sample = receive()
            if sample is None:
                return None
            self.sample = sample
            n = sample.header.number_of_elements
            return memoryview((u8 * n).from_address(sample.payload_ptr))

        wait_and_process = self.waitset.wait_and_process_with_timeout
        try_wait = self.listener.try_wait
        duration = iox2.Duration.from_millis

        def wait(timeout):
            buf = poll()  # a sample may already be queued
            if buf is not None:
                return buf
            wait_and_process(duration(int(timeout * 1000)))
            try_wait()  # consume the notifications
            return poll()

        self.poll = poll
        self.wait = wait
        self.info = {"mode": "Subscriber.receive busy-poll (zero-copy sample)"}
        self.block_info = {"mode": "WaitSet on an event Listener, then Subscriber.receive"}

    def release(self):
        sample = self.sample
        if sample is not None:
            self.sample = None
            sample.delete()  # hand the sample back to the publisher
        return True

    def close(self):
        self.release()
        for attr in ("guard", "waitset", "listener", "ev", "sub", "svc"):
            obj = getattr(self, attr, None)
            if obj is not None and hasattr(obj, "delete"):
                try:
                    obj.delete()
                except Exception:
                    pass
        self.node = None


def probe():
    return {"version": VERSION}


if __name__ == "__main__":
    common.main(Sender, Receiver, probe)
