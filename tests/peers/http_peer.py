#!/usr/bin/python3
"""A plain HTTP file server for the storage tests, standing in for a web server or a Hub mirror.

Serves ROOT on 127.0.0.1 (port 0: a free one, written to --port-file), answers Range requests
("bytes=N-" and "bytes=N-M"), and logs every request as "METHOD PATH RANGE" to --log, one per
line (with " AUTHORIZATION" after it when the request has that header), so tests can count what
was fetched and with which credentials. Faults, each for the first requests of a path:
  --cut PATH:N    send the full Content-Length but only the first N bytes, then close (once)
  --fail PATH:K   answer 503 to the first K requests
  --ignore-range PATH  answer every request for PATH with the whole file (200), as some servers do
  --redirect PATH=URL  answer every request for PATH with a 302 to URL (absolute or relative)
"""
import argparse
import http.server
import os
import threading


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--cut", action="append", default=[])
    parser.add_argument("--fail", action="append", default=[])
    parser.add_argument("--ignore-range", action="append", default=[])
    parser.add_argument("--redirect", action="append", default=[])
    args = parser.parse_args()
    redirects = dict(r.split("=", 1) for r in args.redirect)
    cuts = {p: int(n) for p, n in (c.rsplit(":", 1) for c in args.cut)}
    fails = {p: int(k) for p, k in (f.rsplit(":", 1) for f in args.fail)}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def do_HEAD(self):
            self.serve(body=False)

        def do_GET(self):
            self.serve(body=True)

        def serve(self, body):
            path = self.path.split("?", 1)[0]
            with lock:
                with open(args.log, "a") as log:
                    auth = self.headers.get("Authorization")
                    log.write(f"{self.command} {path} {self.headers.get('Range', '-')}{' ' + auth if auth else ''}\n")
                if path in redirects:
                    self.send_response(302)
                    self.send_header("Location", redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fails.get(path, 0) > 0:
                    fails[path] -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                cut = cuts.pop(path, None)
            file = os.path.realpath(os.path.join(args.root, path.lstrip("/")))
            if not file.startswith(os.path.realpath(args.root)) or not os.path.isfile(file):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            size = os.path.getsize(file)
            start, end = 0, size - 1
            ranged = "" if path in args.ignore_range else self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                first, _, last = ranged[len("bytes="):].partition("-")
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("ETag", f'"{int(os.path.getmtime(file))}-{size}"')
            self.end_headers()
            if not body:
                return
            with open(file, "rb") as f:
                f.seek(start)
                data = f.read(end - start + 1)
            if cut is not None:
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
