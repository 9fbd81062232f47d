#!/usr/bin/env python3
"""netns_bridge.py - make a TCP port of this host's 127.0.0.1 reachable on 127.0.0.1 inside a
private network namespace, without any server listening on a non-loopback address.

    netns_bridge.py --netns /proc/PID/ns/net --port PORT [--ready FILE]

The listening socket is created inside the namespace (setns into it, socket, bind, listen, setns
back); every accepted connection is then relayed to 127.0.0.1:PORT of the namespace this process
started in. It is kubectl port-forward the other way round: a process confined to a namespace of
its own (only `lo`) reaches one host service and nothing else. Writes FILE once it listens.
Runs until SIGTERM; one thread per direction of each connection.
"""
import argparse
import ctypes
import os
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        sys.exit(f"netns_bridge.py: setns: {os.strerror(err)}")


def listen_inside(netns_path, port):
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    setns(target)
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
    finally:
        setns(own)
        os.close(own)
        os.close(target)
    return s


def pump(src, dst):
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def relay(inner, port):
    try:
        outer = socket.create_connection(("127.0.0.1", port), timeout=10)
        outer.settimeout(None)
    except OSError:
        inner.close()
        return
    a = threading.Thread(target=pump, args=(inner, outer), daemon=True)
    b = threading.Thread(target=pump, args=(outer, inner), daemon=True)
    a.start()
    b.start()
    a.join()
    b.join()
    inner.close()
    outer.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--netns", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ready")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = listen_inside(a.netns, a.port)
    if a.ready:
        with open(a.ready, "w") as f:
            f.write(f"{os.getpid()}\n")
    while True:
        conn, _ = server.accept()
        threading.Thread(target=relay, args=(conn, a.port), daemon=True).start()


if __name__ == "__main__":
    main()
