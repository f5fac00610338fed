#!/usr/bin/env python3
"""The demo's health-checked endpoint: an HTTP server on a loopback address.

    hack/demo-endpoint.py ADDRESS PORT DOWN_FILE

GET /healthz answers 200 "ok" while DOWN_FILE does not exist, and 503 "down" while it does,
so hack/demo.sh turns the endpoint unhealthy and back by creating and removing that file.
Loopback only: the demo sends no packet off the machine.
"""
import http.server
import ipaddress
import os
import sys


def main() -> None:
    address, port, down_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if not ipaddress.ip_address(address).is_loopback:
        sys.exit(f"{address} is not a loopback address: the demo serves on loopback only")

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            down = os.path.exists(down_file)
            body = b"down\n" if down else b"ok\n"
            self.send_response(503 if down else 200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # one line per probe, to the log
            sys.stderr.write(f"{self.address_string()} {format % args}\n")
            sys.stderr.flush()

    http.server.ThreadingHTTPServer((address, port), Health).serve_forever()


if __name__ == "__main__":
    main()
