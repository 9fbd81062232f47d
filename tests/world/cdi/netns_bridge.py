#!/usr/bin/env python3
"""netns_bridge.py - make one TCP port of this host's 127.0.0.1 reachable from inside a network
namespace the world made, without any server listening on a host address other than 127.0.0.1.

    netns_bridge.py --netns PATH --port PORT [--listen ADDRESS[:PORT]] [--ready FILE]

The listening socket is created inside the namespace PATH (/proc/PID/ns/net or a bind-mounted
namespace file): setns into it, socket, bind ADDRESS (default 127.0.0.1) and the port (default
PORT), listen, setns back. Every accepted connection is relayed to 127.0.0.1:PORT of the
namespace this process started in. It is kubectl port-forward the other way round:
  - cdi-controller, confined to a namespace of its own (only lo), reaches the kube-apiserver;
  - the node's Pods, on the world's isolated pod bridge (a namespace with no uplink), reach one
    server of the host (the image server) at the bridge's gateway address, and nothing else.
Writes FILE once it listens. Runs until SIGTERM; one thread per direction of each connection.
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


def listen_inside(netns_path, address, port):
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    setns(target)
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
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
    ap.add_argument("--port", type=int, required=True, help="the port on the host's 127.0.0.1")
    ap.add_argument("--listen", default="127.0.0.1", help="ADDRESS[:PORT] inside the namespace")
    ap.add_argument("--ready")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    address, _, port = a.listen.partition(":")
    server = listen_inside(a.netns, address, int(port) if port else a.port)
    if a.ready:
        with open(a.ready, "w") as f:
            f.write(f"{os.getpid()}\n")
    while True:
        conn, _ = server.accept()
        threading.Thread(target=relay, args=(conn, a.port), daemon=True).start()


if __name__ == "__main__":
    main()
