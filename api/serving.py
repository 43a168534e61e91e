"""How gunicorn serves the API, in one place: ``gunicorn -c python:api.serving api.app:create_app()``.

This module is gunicorn's configuration file (gunicorn reads the globals named after its
settings and ignores the rest) and holds the worker class it names. :func:`gunicorn_args` is
the one command line: the local stack, the benchmarks and the Docker image all start it.

Slow clients: a client that opens a connection and sends half a request costs a gevent
worker one greenlet, not a thread, and is dropped once ``keepalive`` seconds pass without its
request head. With the threaded worker, each such connection held one of a few threads until
the client gave up, so a few dozen of them stopped the API from answering even ``/healthz``
(``bench/slow_clients.py`` measures both). A deployment still puts a buffering proxy in front
(``docker/nginx.conf``), as gunicorn's documentation asks; this keeps the API up without one.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from gunicorn import util
from gunicorn.http import Request
from gunicorn.workers.ggevent import GeventWorker

from api.error_responses import HTTP_CODES, HTTP_ERROR, INTERNAL_ERROR

# --- gunicorn settings (names as gunicorn's) ------------------------------------------------------

worker_class = "api.serving.ApiWorker"
# Connections one worker process holds at once, idle ones included (a greenlet each).
worker_connections = 1000
# Seconds a connection may wait for its next request head, the first one included: a client
# that has not sent its request line and headers by then is disconnected.
keepalive = 5
# A worker whose event loop stops for this long (a request hogging the CPU) is restarted.
timeout = 30
graceful_timeout = 20
# What gunicorn refuses before the app sees the request (answered as JSON by ApiWorker).
limit_request_line = 4094  # bytes of method, path, query and version: 414 beyond
limit_request_fields = 100  # header fields: 431 beyond
limit_request_field_size = 8190  # bytes of one header field: 431 beyond
# Forwarded headers are the app's concern, and only from configured proxies
# (COLORIZE_TRUSTED_PROXIES, api/proxies.py): gunicorn trusts none.
forwarded_allow_ips = ""
# gunicorn's runtime control socket sits at one path per user by default, shared by every
# instance on the host; nothing here uses it.
control_socket_disable = True

CONFIG = "python:api.serving"
APP = "api.app:create_app()"


def gunicorn_args(bind: str, workers: int) -> list[str]:
    """gunicorn's arguments (after the program) for the API on ``bind`` with ``workers`` processes."""
    return ["-c", CONFIG, "--bind", bind, "--workers", str(workers), APP]


# --- the worker -----------------------------------------------------------------------------------


class ApiWorker(GeventWorker):
    """gunicorn's gevent worker, answering the requests gunicorn itself refuses (a malformed
    request line or header, a line or header over its limit) with the API's JSON error body,
    and closing connections only once the client has stopped sending (or ``LINGER_S`` passed)."""

    def init_process(self) -> None:
        # gunicorn writes those answers through util.write_error, an HTML page, and offers no
        # setting for their format; this worker process writes them as JSON instead.
        util.write_error = write_json_error
        super().init_process()

    def handle_request(self, listener_name: Any, req: Request, sock: socket.socket, addr: Any) -> bool:
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except StopIteration:
            # The connection closes after this answer. A body the app refused unread (413) may
            # still be arriving: read it first, or the close resets the connection under the answer.
            _linger(sock)
            raise


# In every refusal's details: the request never reached the app.
REFUSED_BY_SERVER = {"refused_by": "http_server"}
# After a refusal, what the client is still sending is read and dropped for this long (at most
# this much): closing with unread bytes resets the connection, and the client may lose the answer.
LINGER_S = 2.0
LINGER_BYTES = 4 * 1024**2


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, with ``{"error": {"code", "message", "details"}}`` as the body."""
    code = INTERNAL_ERROR if status_int >= 500 and status_int != 501 else HTTP_CODES.get(status_int, HTTP_ERROR)
    body = json.dumps({"error": {"code": code, "message": mesg or reason, "details": REFUSED_BY_SERVER}}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)
    _linger(sock)


def _linger(sock: socket.socket) -> None:
    deadline = time.monotonic() + LINGER_S
    drained = 0
    try:
        sock.shutdown(socket.SHUT_WR)
        while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:
        pass  # the client went away or stalled: nothing more to do for it
