"""A small HTTP server for cycnn's pages: a fixed table of routes answering JSON, and nothing else.

No path is ever looked up on disk: a request's path is matched exactly against the routes (the page itself is one
of them, its style sheet and script inline), so ``/../../etc/passwd`` in any encoding is just an unknown path.
Every failure is a 4xx (or 5xx) with a one-line JSON ``{"error": ...}``, after which the server goes on serving.
A request body needs a ``Content-Length`` no larger than the route allows, checked before a byte is read; a client
that stops sending is dropped after ``TIMEOUT`` seconds. Bound anywhere but the loopback interface, the server
asks for a token (``?token=`` in the URL or the ``X-Cycnn-Token`` header), as Jupyter does.
"""
import hmac
import json
import re
import secrets
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cycnn.errors import CycnnError

MAX_BODY = 4 << 20  # bytes of a request body: a photo of a digit, or a JSON image, is far smaller
TIMEOUT = 20  # seconds a client may take to send its request
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ApiError(Exception):
    """A request the server refuses: the HTTP status and the one-line message it answers with."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Request:
    """What a route handler sees: the method, the path, the query (name -> last value) and the body's bytes."""

    def __init__(self, method, path, query, headers, body):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    @property
    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    def json(self, what="the body"):
        """The body parsed as JSON: 400 naming ``what`` if it is not (NaN and Infinity, which Python's parser
        would take, are not JSON numbers)."""
        try:
            return json.loads(self.body.decode("utf-8"), parse_constant=_not_a_number)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ApiError(400, f"{what} is not valid JSON ({str(exc)[:100]})") from None


def _not_a_number(name):
    raise ValueError(f"{name} is not a number JSON allows")


class Route:
    """A handler for one method and path: ``handler(request)`` returns a dict (sent as JSON) or
    ``(bytes, content_type)``; ``max_body`` is the largest body it takes (0: none)."""

    def __init__(self, handler, max_body=0):
        self.handler, self.max_body = handler, max_body


def check_port(port):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise CycnnError(f"--port must be a port number from 0 to 65535, received {port!r}")
    return port


class JsonServer:
    """Serves ``routes`` ({(method, path): Route}) on ``host:port`` (port 0: a free one) from a daemon thread.

    Off the loopback interface a random token is required (``token`` if given); ``url`` carries it. ``what`` names
    the page in the error when the port is taken."""

    def __init__(self, routes, port, host="127.0.0.1", token=None, what="the page"):
        check_port(port)
        self.routes = dict(routes)
        self.token = token or (None if host in LOOPBACK else secrets.token_urlsafe(24))
        try:
            self.httpd = _QuietServer((host, port), partial(_Handler, self))
        except (OSError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise CycnnError(f"cannot serve {what} on {host}:{port} ({reason}); choose another --port (0 picks a "
                             "free one)") from None
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name=f"cycnn: {what}",
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def authorized(self, query, headers):
        if self.token is None:
            return True
        given = query.get("token") or headers.get("X-Cycnn-Token") or ""
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8"))

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    """The standard server, minus its traceback on the console when a client misbehaves (closes its connection
    early, sends garbage): the console belongs to the command, and the next request is served anyway."""

    request_queue_size = 128  # the standard 5 refuses connections when a few dozen clients come at once
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


class _Handler(BaseHTTPRequestHandler):
    timeout = TIMEOUT
    protocol_version = "HTTP/1.1"  # keep-alive: a page drawing sends a request per stroke movement
    disable_nagle_algorithm = True  # else the body waits for the headers' delayed ACK: 40 ms per answer

    def __init__(self, server_state, *args, **kwargs):
        self.app = server_state
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_HEAD(self):
        self._handle("HEAD")

    def _handle(self, method):
        self._body_read = False
        try:
            request = self._request(method)
            route = self.app.routes[(method, request.path)]
            request.body = self._body(route.max_body)
            result = route.handler(request)
        except ApiError as exc:
            return self._error(exc.status, str(exc))
        except CycnnError as exc:
            return self._error(400, str(exc))
        except MemoryError:
            return self._error(503, "out of memory")
        except Exception as exc:  # a bug must not take the server down: the client hears of it, the next is served
            return self._error(500, f"internal error ({type(exc).__name__}: {exc})")
        if isinstance(result, dict):
            self._send(200, json.dumps(result, allow_nan=False).encode("utf-8"), "application/json")
        else:
            self._send(200, *result)

    def _request(self, method):
        parts = urlsplit(self.path)
        try:
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True, strict_parsing=False,
                                                   max_num_fields=64).items()}
        except ValueError:
            raise ApiError(400, "too many query parameters") from None
        if not self.app.authorized(query, self.headers):
            raise ApiError(403, "this server needs its token: open the URL it printed (with ?token=...)")
        known = {m for m, p in self.app.routes if p == parts.path}
        if not known:
            raise ApiError(404, f"not found: {parts.path[:200]!r}")
        if method not in known:
            raise ApiError(405, f"{parts.path} takes {' or '.join(sorted(known))}, not {method}")
        return Request(method, parts.path, query, self.headers, b"")

    def _body(self, limit):
        """The body, its size checked before any of it is read; a request that would leave unread bytes on the
        connection closes it."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "send the body with a Content-Length (chunked transfer is not supported)")
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not re.fullmatch(r"[0-9]{1,12}", length.strip()):
            self.close_connection = True
            raise ApiError(400, f"Content-Length must be a whole number of bytes, received {length[:40]!r}")
        size = int(length)
        if size > limit:
            self.close_connection = True
            raise ApiError(413, f"the body is {size:,} bytes; this path takes at most {limit:,}" if limit else
                           "this path takes no body")
        body = self.rfile.read(size)
        self._body_read = True
        if len(body) != size:
            self.close_connection = True
            raise ApiError(400, f"the body ended after {len(body):,} of its {size:,} bytes")
        return body

    def send_error(self, code, message=None, explain=None):
        """The standard server's own refusals (a malformed request line, an unknown method) in JSON too."""
        self.close_connection = True
        self._error(code, message or self.responses.get(code, ("error",))[0])

    def _error(self, status, message):
        headers = getattr(self, "headers", None) or {}
        if not getattr(self, "_body_read", True) and headers.get("Content-Length", "0").strip() != "0":
            self.close_connection = True  # the unread body would be taken for the next request
        one_line = " ".join(str(message).split())[:500]
        self._send(status, json.dumps({"error": one_line}).encode("utf-8"), "application/json")

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # no line per request on the console
