"""A fault-injecting HTTP proxy in front of the test S3 server: throttling (503 SlowDown), resets, refusals, denials,
bodies damaged on the way.

It speaks just enough HTTP/1.1 to see request boundaries (Content-Length or
chunked bodies, Expect: 100-continue, keep-alive), so a fault lands on a whole
request, never on a random byte. Every request is forwarded on a fresh upstream
connection and the response is re-framed with a Content-Length for the client.

Faults are chosen by a rule that tests switch at run time (`proxy.inject(...)`,
`proxy.pass_through()`); a rule applies to the next `count` matching requests
(or a seeded fraction of them), so a test is deterministic in what is injected
and asserts it through `proxy.injected`. No timers, no sleeps.
"""

from __future__ import annotations

import random
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate

ACTIONS = {
    "slowdown": "answer 503 SlowDown (S3's throttling error), the request never reaches the server",
    "deny": "answer 403 AccessDenied, the request never reaches the server",
    "reset": "reset the connection (RST) once the request head is read; the request never reaches the server",
    "reset-response": "let the server carry the request out, then reset the connection half-way through the "
                      "response (mid-body when there is a body, mid-head otherwise): the answer is lost",
    "corrupt": "forward the request with one byte of its body changed (the middle one): bytes damaged on the "
               "way, which a server that checks the SHA-256 sent with them refuses",
    "unconditional": "forward the request without its If-None-Match header: what a server without conditional "
                     "writes would see (only a server that checks no signature, such as moto, then carries it out)",
    "refuse": "reset every new connection as soon as it is accepted, before a byte is read, and every request "
              "on one already open: a server gone (the listener stays up, so switching back is immediate)",
}

_ERRORS = {
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "deny": (403, "Forbidden", "AccessDenied", "Access Denied"),
}


@dataclass
class Rule:
    """Which requests get which fault. Requests are matched as 'METHOD target'."""

    action: str
    count: int | None = None            # how many matching requests to fault; None: all of them, for good
    fraction: float | None = None       # fault only this share of matching requests, drawn from the proxy's seed
    alternate: bool = False             # fault a request only if its method is not the last faulted one's
    methods: frozenset[str] | None = None
    path: re.Pattern | None = None      # searched in the request target (/bucket/key?query)
    after: re.Pattern | None = None     # dormant until a request matching this has passed through
    armed: bool = True
    last_method: str | None = None

    def matches(self, method: str, target: str) -> bool:
        return ((self.methods is None or method in self.methods)
                and (self.path is None or self.path.search(target) is not None))


class FaultProxy:
    """A TCP proxy on 127.0.0.1 (free port) to upstream host:port that injects HTTP faults by rule.

    injected: Counter of faults served, by action. log: (method, target, action) of
    every request seen, in the order decided ('pass' for those forwarded untouched).
    agents: Counter of (method, the first word of the request's User-Agent): which client sent what.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._rule: Rule | None = None
        self.injected: Counter = Counter()
        self.log: list[tuple[str, str, str]] = []
        self.agents: Counter = Counter()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._gate: tuple[re.Pattern, int, float] | None = None
        self._gate_changed = threading.Condition(self._lock)
        self._at_gate = 0
        self.gate_opened = 0  # times `want` requests were at the gate together
        self.gate_timed_out = 0  # requests let through after waiting `timeout` seconds alone

    # -- control -------------------------------------------------------------

    def gate(self, pattern: str, want: int, timeout: float = 10.0) -> None:
        """Hold each request whose "METHOD target" matches pattern until `want` of them are held
        together (they then all go on), or until timeout: shows whether a client sends such
        requests at the same time, without timing anything."""
        with self._lock:
            self._gate = (re.compile(pattern), want, timeout)

    def _pass_gate(self, method: str, target: str) -> None:
        with self._gate_changed:
            gate = self._gate
            if gate is None or not gate[0].search(f"{method} {target}"):
                return
            pattern, want, timeout = gate
            self._at_gate += 1
            if self._at_gate >= want:
                self.gate_opened += 1
                self._at_gate = 0
                self._gate_changed.notify_all()
                return
            opened = self.gate_opened
            if not self._gate_changed.wait_for(lambda: self.gate_opened != opened, timeout):
                self.gate_timed_out += 1
                self._at_gate -= 1

    @property
    def endpoint_url(self) -> str:
        host, port = self._listener.getsockname()
        return f"http://{host}:{port}"

    def inject(self, action: str, *, count: int | None = None, fraction: float | None = None, alternate: bool = False,
               methods=None, path: str | None = None, after: str | None = None) -> None:
        """Fault the next `count` requests (all, when None) that match methods and path, from now on
        (or from the first request matching `after`). Replaces the current rule.

        alternate: the faults take turns between methods (a GET, then a PUT, ...), whatever order
        concurrent requests arrive in: each method gets its share of a burst in every run."""
        if action not in ACTIONS:
            raise ValueError(f"unknown fault {action!r}: one of {', '.join(ACTIONS)}")
        if fraction is not None and not 0 < fraction <= 1:
            raise ValueError("fraction must be within (0, 1]")
        rule = Rule(action, count, fraction, alternate, frozenset(m.upper() for m in methods) if methods else None,
                    re.compile(path) if path else None, re.compile(after) if after else None, armed=after is None)
        with self._lock:
            self._rule = rule

    def pass_through(self) -> None:
        with self._lock:
            self._rule = None

    @property
    def remaining(self) -> int | None:
        """Faults the current rule still has to serve (None: no limit; 0: none, or no rule)."""
        with self._lock:
            return 0 if self._rule is None else self._rule.count

    def _decide(self, method: str, target: str) -> str:
        with self._lock:
            action = "pass"
            rule = self._rule
            if rule is not None:
                if not rule.armed:
                    if rule.after.search(f"{method} {target}"):
                        rule.armed = True  # this request passes; the faults start with the next one
                elif (rule.matches(method, target) and not (rule.alternate and method == rule.last_method)
                      and (rule.fraction is None or self._random.random() < rule.fraction)):
                    rule.last_method = method
                    action = self._take(rule)
            self.log.append((method, target, action))
            return action

    def _refusing(self) -> bool:
        """Whether to refuse a new connection (decided before any request on it can be read)."""
        with self._lock:
            rule = self._rule
            if rule is None or not rule.armed or rule.action != "refuse":
                return False
            self.log.append(("-", "(new connection)", self._take(rule)))
            return True

    def _take(self, rule: Rule) -> str:
        """Serve one fault of rule (the lock held): count it, and retire the rule once spent."""
        if rule.count is not None:
            rule.count -= 1
            if rule.count == 0:
                self._rule = None
        self.injected[rule.action] += 1
        return rule.action

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "FaultProxy":
        self._listener = socket.create_server(("127.0.0.1", 0))
        thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            _shut(self._listener)  # shutdown, not just close, is what wakes the accept() blocked on it
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _shut(conn)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            if self._refusing():
                _reset(conn)
                continue
            with self._lock:
                self._connections.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="faultproxy-conn", daemon=True)
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    # -- one client connection ---------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        reset = False
        try:
            while not self._stopping.is_set():
                head = _read_head(reader)
                if head is None:
                    return  # the client closed its (idle) connection
                request_line, headers = head
                method, target, version = request_line.split(" ", 2)
                with self._lock:
                    self.agents[method, (_header(headers, "user-agent").split() or ["-"])[0].split("/")[0]] += 1
                action = self._decide(method, target)
                if action == "unconditional":
                    headers = [(name, value) for name, value in headers if name.lower() != "if-none-match"]
                if action in ("reset", "refuse"):
                    reset = True
                    return
                expects = _header(headers, "expect").lower() == "100-continue"
                keep_alive = version == "HTTP/1.1" and _header(headers, "connection").lower() != "close"
                if action in _ERRORS:
                    if expects:
                        # The client still holds the body back: answer now and close, as S3 does.
                        conn.sendall(_error_response(action, method, keep_alive=False))
                        return
                    _read_body(reader, headers)
                    conn.sendall(_error_response(action, method, keep_alive=keep_alive))
                    if not keep_alive:
                        return
                    continue
                if expects:
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = _read_body(reader, headers)
                if action == "corrupt" and body:
                    middle = len(body) // 2
                    body = body[:middle] + bytes([body[middle] ^ 0x20]) + body[middle + 1:]
                self._pass_gate(method, target)
                response = self._forward(method, target, version, headers, body)
                if action == "reset-response":
                    conn.sendall(response[:_cut_point(response)])
                    reset = True
                    return
                conn.sendall(response)
                if not keep_alive:
                    return
        except (OSError, ValueError):
            return  # a client that went away mid-request; nothing to forward
        finally:
            reader.close()  # before the socket: the fd closes only once the reader lets go of it
            with self._lock:
                self._connections.discard(conn)
            if reset:
                _reset(conn)
            else:
                _shut(conn)

    def _forward(self, method: str, target: str, version: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
        """The upstream's response to the request, re-framed with a Content-Length for the client."""
        hop = {"connection", "keep-alive", "expect", "proxy-connection"}
        lines = [f"{method} {target} {version}"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in hop]
        lines.append("Connection: close")
        with socket.create_connection(self.upstream) as upstream:
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            with upstream.makefile("rb") as reader:
                status_line, response_headers = _read_head(reader) or ("", [])
                if not status_line:
                    raise OSError("the upstream closed without answering")
                status = int(status_line.split(" ", 2)[1])
                bodyless = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                response_body = b"" if bodyless else _read_body(reader, response_headers, response=True)
        framing = {"connection", "keep-alive", "transfer-encoding"} | (set() if bodyless else {"content-length"})
        out = [status_line] + [f"{n}: {v}" for n, v in response_headers if n.lower() not in framing]
        if not bodyless:
            out.append(f"Content-Length: {len(response_body)}")
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + response_body


def _read_head(reader) -> tuple[str, list[tuple[str, str]]] | None:
    first = reader.readline(65537)
    if not first:
        return None
    if not first.endswith(b"\n"):
        raise ValueError("an HTTP head line without an end")
    headers = []
    while True:
        line = reader.readline(65537)
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ValueError("the connection closed inside an HTTP head")
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return first.decode("latin-1").rstrip("\r\n"), headers


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for n, v in headers if n.lower() == name), "")


def _read_body(reader, headers, *, response: bool = False) -> bytes:
    """A request's body as sent (to forward it byte for byte); a response's de-chunked,
    read up to the close when it has no framing (to re-frame it for the client)."""
    if "chunked" in _header(headers, "transfer-encoding").lower():
        raw, data = bytearray(), bytearray()
        while True:
            size_line = reader.readline(65537)
            raw += size_line
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
                    raw += trailer
                raw += b"\r\n"
                break
            chunk = _read_exactly(reader, size + 2)
            raw += chunk
            data += chunk[:-2]
        return bytes(data) if response else bytes(raw)
    length = _header(headers, "content-length")
    if length:
        return _read_exactly(reader, int(length))
    return reader.read() if response else b""


def _read_exactly(reader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise ValueError(f"the connection closed after {len(data)} of {size} body bytes")
    return data


def _error_response(action: str, method: str, *, keep_alive: bool) -> bytes:
    status, phrase, code, message = _ERRORS[action]
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>faultproxy</RequestId><HostId>faultproxy</HostId></Error>").encode()
    head = [f"HTTP/1.1 {status} {phrase}", "Content-Type: application/xml", f"Date: {formatdate(usegmt=True)}",
            "x-amz-request-id: faultproxy", f"Content-Length: {len(body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if method == "HEAD" else body)


def _cut_point(response: bytes) -> int:
    head_end = response.index(b"\r\n\r\n") + 4
    body = len(response) - head_end
    return head_end + body // 2 if body > 1 else head_end // 2


def _reset(conn: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, not an orderly FIN."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def _shut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
