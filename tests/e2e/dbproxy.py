"""A small TCP proxy between squall and MariaDB, so that a test can break the network the way real
networks break: swallow packets (a black hole), reset connections, or slow them down.

    proxy = DbProxy(db.host, db.port).start()   # listens on 127.0.0.1, port proxy.port
    ...point squall's db.host/db.port at proxy.host/proxy.port...
    proxy.blackhole()                              # nothing gets through, nothing is refused
    proxy.pass_()                                  # a working network again
    proxy.close()                                  # ends the proxy and every connection

Modes (each applies to the connections that exist and to the ones that arrive later):

- pass: bytes are forwarded both ways as they come.
- blackhole: every byte from either side is read and thrown away, and nothing is ever sent back:
  no RST, no FIN. New connections are accepted (the listening socket's kernel completes the TCP
  handshake anyway) and never connected onwards; MariaDB speaks first, so the client waits for a
  greeting that never comes, which is what a dropped network looks like to it.
- reset: every current connection is closed with SO_LINGER 0, which sends RST to both ends; new
  connections are accepted and reset at once.
- delay(seconds): each chunk read is held that long, then forwarded (order kept per direction).

stall_newest() black-holes only the connection accepted last (say, the engine's side connection
for KILL QUERY, which it opens on first need), leaving the mode and every other connection alone.

The choice for what the black hole leaves behind: bytes swallowed during it are lost for good.
The proxy terminates TCP itself, so nothing retransmits them, and a MySQL session that lost part
of its stream cannot be resumed anyway. So a connection that lived through a black hole stays
stalled after pass_() (it keeps swallowing) until one of its ends closes it: the engine must have
given up on it (a timeout) and opened a new one. A test that wants the far end to have forgotten
the session as well (a server that answers with RST after the partition heals) calls reset() and
then pass_(). Closes are passed on in every mode (a FIN or RST from one end closes the other), so
that a stalled session does not outlive its client on the database server; only data is lost.

Loopback only: it listens on 127.0.0.1 and connects only to a loopback address. One daemon thread
runs a selector loop; commands from the test thread go through a lock and a wake-up socket.
close() (or the atexit hook, for a test that died before its cleanup) stops it.

Python 3 standard library only.
"""

import atexit
import collections
import ipaddress
import selectors
import socket
import struct
import threading
import time

PASS, BLACKHOLE, RESET = "pass", "blackhole", "reset"
STALL_NEWEST = "stall-newest"    # a command, not a mode: the others go on as they were
CHUNK = 65536


def _is_loopback(host):
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _rst_close(sock):
    """Close so that the peer gets RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Link:
    """One client connection and (unless it arrived during a black hole or a reset) its upstream
    connection to the database."""

    def __init__(self, client, upstream, seq):
        self.seq = seq                      # accept order
        self.client = client
        self.upstream = upstream
        self.stalled = upstream is None     # swallows everything for the rest of its life
        self.out = {client: bytearray()}    # bytes ready to be written to that socket
        if upstream is not None:
            self.out[upstream] = bytearray()
        self.held = collections.deque()     # (due, destination socket, bytes) under delay

    def other(self, sock):
        return self.upstream if sock is self.client else self.client

    def sockets(self):
        return [s for s in (self.client, self.upstream) if s is not None]

    def stall(self):
        self.stalled = True
        self.held.clear()
        for buf in self.out.values():
            del buf[:]


_open_proxies = []


@atexit.register
def _close_all():
    for p in list(_open_proxies):
        p.close()


class DbProxy:
    def __init__(self, target_host, target_port):
        if not _is_loopback(target_host):
            raise ValueError("DbProxy forwards to loopback addresses only, not %r" % target_host)
        self.target = (target_host, int(target_port))
        self.host = "127.0.0.1"
        self.port = None
        self.accepted = 0               # connections accepted so far (any mode)
        self._mode = PASS
        self._delay = 0.0
        self._lock = threading.Lock()
        self._commands = collections.deque()
        self._links = {}                # socket -> _Link, both ends of each link
        self._sel = selectors.DefaultSelector()
        self._listener = None
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stopping = False
        self._error = None

    # -- the test's side

    def start(self):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self._listener.listen(256)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="dbproxy:%d" % self.port,
                                        daemon=True)
        _open_proxies.append(self)
        self._thread.start()
        return self

    def pass_(self):
        """Forward everything again (connections stalled by a black hole stay stalled)."""
        self._command(PASS)

    def blackhole(self):
        self._command(BLACKHOLE)

    def reset(self):
        self._command(RESET)

    def stall_newest(self):
        """Swallow everything on the connection accepted last, from now on."""
        self._command(STALL_NEWEST)

    def delay(self, seconds):
        """Pass, holding each chunk `seconds` before forwarding it."""
        self._command(PASS, float(seconds))

    @property
    def mode(self):
        with self._lock:
            return self._mode

    def connections(self):
        """Client connections currently open through the proxy: (live, stalled)."""
        with self._lock:
            links = {id(link): link for link in self._links.values()}.values()
            stalled = sum(1 for link in links if link.stalled)
            return len(links) - stalled, stalled

    def close(self):
        """Stop the loop and close every socket (clients see a FIN). Idempotent."""
        if self in _open_proxies:
            _open_proxies.remove(self)
        if self._thread is None:
            return
        self._stopping = True
        self._wake()
        self._thread.join(5)
        self._thread = None
        if self._error is not None:
            raise AssertionError("dbproxy failed: %r" % (self._error,))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _command(self, mode, delay=0.0):
        if self._thread is None:
            raise AssertionError("the proxy is not running")
        done = threading.Event()
        with self._lock:
            self._commands.append((mode, delay, done))
        self._wake()
        # Wait until the loop applied it, so that the test's next step sees the new mode.
        if not done.wait(5):
            raise AssertionError("dbproxy did not apply %s within 5 s (error: %r)"
                                 % (mode, self._error))

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- the loop thread

    def _run(self):
        try:
            while not self._stopping:
                for key, events in self._sel.select(self._next_timeout()):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._io(key.fileobj, events)
                self._apply_commands()
                self._release_held()
        except BaseException as e:   # reported by close()
            self._error = e
        finally:
            self._shutdown()

    def _next_timeout(self):
        due = [link.held[0][0] for link in set(self._links.values()) if link.held]
        if not due:
            return None
        return max(0.0, min(due) - time.monotonic())

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _apply_commands(self):
        with self._lock:
            commands, self._commands = list(self._commands), collections.deque()
        for mode, delay, done in commands:
            links = set(self._links.values())
            if mode == STALL_NEWEST:
                if links:
                    max(links, key=lambda link: link.seq).stall()
                done.set()
                continue
            with self._lock:
                self._mode, self._delay = mode, delay
            if mode == BLACKHOLE:
                for link in links:
                    link.stall()
            elif mode == RESET:
                for link in links:
                    self._drop(link, rst=True)
            self._update_interest(links)
            done.set()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            self.accepted += 1
            mode = self.mode
            if mode == RESET:
                _rst_close(client)
                continue
            upstream = None
            if mode == PASS:
                try:
                    upstream = socket.create_connection(self.target, timeout=2)
                except OSError:      # the database is down: so is the proxied connection
                    _rst_close(client)
                    continue
                upstream.setblocking(False)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, upstream, self.accepted)
            with self._lock:
                for s in link.sockets():
                    self._links[s] = link
            for s in link.sockets():
                self._sel.register(s, selectors.EVENT_READ, link)

    def _io(self, sock, events):
        link = self._links.get(sock)
        if link is None:
            return
        if events & selectors.EVENT_WRITE:
            buf = link.out[sock]
            try:
                n = sock.send(buf)
                del buf[:n]
            except BlockingIOError:
                pass
            except OSError:
                self._drop(link, rst=True)
                return
        if events & selectors.EVENT_READ:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                return
            except OSError:          # reset by that end: reset the other one too
                self._drop(link, rst=True)
                return
            if not data:
                self._drop(link, rst=False)
                return
            if link.stalled:
                return               # swallowed
            dest = link.other(sock)
            with self._lock:
                delay = self._delay
            if delay > 0 or link.held:
                link.held.append((time.monotonic() + delay, dest, data))
            else:
                link.out[dest] += data
        self._update_interest([link])

    def _release_held(self):
        now = time.monotonic()
        touched = []
        for link in set(self._links.values()):
            while link.held and link.held[0][0] <= now:
                _, dest, data = link.held.popleft()
                link.out[dest] += data
                touched.append(link)
        self._update_interest(touched)

    def _update_interest(self, links):
        for link in set(links):
            for s in link.sockets():
                if self._links.get(s) is not link:
                    continue
                events = selectors.EVENT_READ
                if link.out[s]:
                    events |= selectors.EVENT_WRITE
                self._sel.modify(s, events, link)

    def _drop(self, link, rst):
        """Close both ends of a link: with RST when rst (or when bytes were still owed), else
        with a FIN (pending output is given a last try first)."""
        for s in link.sockets():
            if self._links.get(s) is not link:
                continue
            with self._lock:
                del self._links[s]
            self._sel.unregister(s)
            if not rst and link.out[s]:
                try:
                    s.send(link.out[s])
                except OSError:
                    pass
            if rst:
                _rst_close(s)
            else:
                s.close()

    def _shutdown(self):
        for link in set(self._links.values()):
            self._drop(link, rst=False)
        for s in (self._listener, self._wake_r, self._wake_w):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self._sel.close()
