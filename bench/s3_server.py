"""moto's S3 on 127.0.0.1 for the benchmark: `python bench/s3_server.py PORT`.

The same S3 implementation as `python -m moto.server` (moto's S3 backend,
werkzeug's threaded server, moto's request handler), with two differences that
change its speed, not what it answers:

- every request goes to the S3 backend: moto's dispatcher otherwise works out
  the service of each request anew (parsing its Authorization header and
  stat()ing every moto module's directory, ~20% of the server's time);
- connections are kept alive (HTTP/1.1), as AWS's and MinIO's are: with
  HTTP/1.0 every request pays a TCP connect and a new server thread.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


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


class KeepAliveHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"


def main() -> None:
    port = int(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple("127.0.0.1", port, S3Application(create_backend_app), threaded=True, request_handler=KeepAliveHandler)


if __name__ == "__main__":
    main()
