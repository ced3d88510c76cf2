"""moto's S3 server for the storage tests, one request at a time.

moto keeps each object in a temporary file that it closes when the object
is replaced; two requests on the same key at once then fail inside moto
(HTTP 500 "read of closed file"). Real S3 and its compatible stores do
not, so the tests serialize moto's request handling: connections are still
accepted concurrently, and the drivers still send concurrently.

Usage: python3 s3_test_server.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            # moto answers with the whole body at once: materialize it while
            # the lock is held, before another request may change the key.
            return list(app(environ, start_response))

    run_simple(host, port, serialized, threaded=True)


if __name__ == "__main__":
    main()
