"""moto's S3 on 127.0.0.1 for the benchmark: `python bench/s3_server.py PORT`.

The same S3 implementation as `python -m moto.server` (moto's S3 backend and
its WSGI application), served differently, which changes its speed, not what
it answers:

- by waitress (a production WSGI server) instead of werkzeug's development
  server: connections are kept alive (HTTP/1.1), as AWS's and MinIO's are, and
  requests are handled by a fixed pool of threads without a log line each.
  werkzeug's server sends `Connection: close` on every response whatever the
  protocol version, so every request paid a TCP connect, a new thread and a
  wait for the client's close (measured, 13 KB PUTs: server CPU 2.5 -> 1.9 ms,
  client CPU 2.1 -> 1.9 ms a request);
- every request goes to the S3 backend: moto's dispatcher otherwise works out
  the service of each request anew (parsing its Authorization header and
  stat()ing every moto module's directory, ~20% of the server's time).
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve

THREADS = 4  # the ingest's two worker processes, its main process, and one to spare


class S3Application(DomainDispatcherApplication):
    """moto's dispatcher, short-cut to its S3 app (moto's own API, /moto-api, still answers)."""

    def get_application(self, environ: dict[str, Any]):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return super().get_application(environ)
        app = self.app_instances.get("s3")
        if app is None:
            with self.lock:
                app = self.app_instances.get("s3") or self.create_app("s3")
                self.app_instances["s3"] = app
        return app


def main() -> None:
    port = int(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(S3Application(create_backend_app), host="127.0.0.1", port=port, threads=THREADS, ident="moto-s3",
          clear_untrusted_proxy_headers=True, _quiet=True)


if __name__ == "__main__":
    main()
