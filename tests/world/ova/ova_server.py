#!/usr/bin/env python3
"""ova_server.py - serves the test OVAs for the OVA world tests, on 127.0.0.1.

  ova_server.py --dir DIR --port-file FILE [--no-range] [--user U --password P]
                [--cert PEM --key PEM]

GET and HEAD of files in DIR; single byte ranges ("Range: bytes=a-b" / "a-") answered with 206
and Content-Range, unless --no-range (then every GET is 200 with the whole file, like python's
http.server). Basic auth when --user is given (401 otherwise); TLS with --cert/--key. Writes the
port it bound (port 0) to --port-file once it listens. One line per request on stdout:
"<method> <path> <status> <range or -> <bytes sent>", which the tests read to count bytes.
"""
import argparse
import base64
import os
import re
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--no-range", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password", default="")
    p.add_argument("--cert")
    p.add_argument("--key")
    args = p.parse_args()
    want_auth = None
    if args.user:
        want_auth = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def record(self, status, rng, sent):
            print(f"{self.command} {self.path} {status} {rng or '-'} {sent}", flush=True)

        def fail(self, status, rng=None):
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="ova"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.record(status, rng, 0)

        def serve(self, body):
            if want_auth and self.headers.get("Authorization") != want_auth:
                return self.fail(401)
            path = os.path.join(args.dir, os.path.basename(self.path.split("?")[0]))
            if not os.path.isfile(path):
                return self.fail(404)
            size = os.path.getsize(path)
            first, last, status = 0, size - 1, 200
            rng = self.headers.get("Range")
            if rng and not args.no_range:
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                if not m:
                    return self.fail(416, rng)
                first = int(m.group(1))
                last = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
                if first >= size or last < first:
                    return self.fail(416, rng)
                status = 206
            else:
                rng = None
            length = last - first + 1
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            if not args.no_range:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            sent = 0
            if body:
                with open(path, "rb") as f:
                    f.seek(first)
                    try:
                        while sent < length:
                            chunk = f.read(min(1 << 20, length - sent))
                            if not chunk:
                                break
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
            self.record(status, rng, sent)

        def do_GET(self):
            self.serve(True)

        def do_HEAD(self):
            self.serve(False)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
