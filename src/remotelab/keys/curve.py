"""The CurveZMQ keys of the control channel and the live stream.

Every zmq socket remotelab serves (a worker's control socket, the stream proxy's input and
output) is a CURVE server: its traffic is encrypted, and its ZAP handler
(:class:`Gatekeeper`) lets in only the clients whose public key is allowed. Every client (the
gateway, ``remotelab`` commands, a worker publishing) is a CURVE client, which needs the
server's public key and connects only to a server whose key it trusts.

They live in ``curve`` in the keys directory (0700), as zmq certificates
(``zmq.auth.load_certificate`` reads them), every file 0600:

- ``NAME.key_secret`` and ``NAME.key``: this installation's keypairs: ``stream-proxy``,
  ``worker-LAB`` (a worker's control socket and its publisher), ``client`` (everything else:
  the gateway, commands, ``remotelab watch``). Each is made on first use and allowed;
- ``allowed/NAME.key``: the public keys of trusted peers: they may command workers, publish
  to the stream and read it; a client trusts a server only if its key is here;
- ``watchers/NAME.key``: public keys that may only read the stream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from remotelab.errors import RemotelabError
from remotelab.keys.files import is_private, keys_dir, write_private
from remotelab.settings import private_dir

log = logging.getLogger(__name__)

#: the stream proxy's keypair, and its entry in a client's allowlist
PROXY = "stream-proxy"
#: the keypair of this installation's clients (gateway, commands, subscribers)
CLIENT = "client"
ALLOWED = "allowed"
WATCHERS = "watchers"
#: ZAP domains: who may connect is decided per socket
CONTROL, PUBLISH, SUBSCRIBE = "remotelab-control", "remotelab-stream-in", "remotelab-stream-out"

Access = Literal["all", "watch", "none"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "*"}


class CurveKeyError(RemotelabError, ValueError):
    """A CURVE key that is missing, malformed or not private."""


def worker_key_name(lab: str) -> str:
    """The name of the keypair of ``lab``'s workers on a host."""
    return "worker-" + re.sub(r"[^A-Za-z0-9_.-]", "_", lab) if lab else "worker"


def check_name(name: str) -> str:
    """``name`` if it can name a key (letters, digits, ``_.-``; at most 64), else an error."""
    if not _NAME.match(name):
        raise CurveKeyError(
            f"a key name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
            f"digit: not {name!r}"
        )
    return name


def parse_key(text: str | bytes) -> bytes:
    """A public key given as its 40 Z85 characters, checked; the Z85 bytes."""
    key = (text.encode() if isinstance(text, str) else text).strip()
    try:
        ok = len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError):
        ok = False
    if not ok:
        raise CurveKeyError("a CURVE public key is 40 Z85 characters (see `remotelab keys list`)")
    return key


def load_public(path: Path) -> bytes:
    """The public key (Z85) of a zmq certificate file, e.g. a peer's ``NAME.key``."""
    return _load(Path(path))[0]


def is_local(address: str) -> bool:
    """Whether a zmq endpoint is on this host (ipc, inproc, loopback or this host's name)."""
    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    try:
        host = urlsplit(f"//{rest}").hostname or rest.rsplit(":", 1)[0]
    except ValueError:
        return False
    return host in _LOCAL_HOSTS or host.startswith("127.") or host == socket.gethostname()


@dataclass(frozen=True)
class Keypair:
    """One of this installation's CURVE keypairs (Z85)."""

    name: str
    public: bytes
    secret: bytes = field(repr=False)

    def client(self, sock: zmq.Socket[Any], server_key: bytes) -> None:
        """Make ``sock`` a CURVE client of the server whose public key is ``server_key``
        (before it connects)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = server_key

    def serve(self, sock: zmq.Socket[Any], domain: str) -> None:
        """Make ``sock`` a CURVE server whose clients the ZAP ``domain`` admits (before it
        binds); its context needs a running :class:`Gatekeeper`."""
        sock.zap_domain = domain.encode()
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True


@dataclass(frozen=True)
class KeyEntry:
    """A key as ``remotelab keys list`` shows it."""

    name: str
    public: str
    own: bool  # a keypair of this installation
    access: Access  # what it may do here
    private: bool  # its files readable by their owner only
    path: Path  # its public key file (what to copy to another host)


class CurveKeys:
    """The CURVE keys in a directory (default ``curve`` in the keys directory)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else keys_dir() / "curve"
        self._cache: dict[str, tuple[object, frozenset[bytes]]] = {}
        self._lock = threading.Lock()

    def _dir(self, which: str = "") -> Path:
        path = private_dir(self.root / which if which else self.root)
        _tighten(path, 0o700)
        return path

    def public_path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.key"

    def secret_path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.key_secret"

    # -- this installation's keypairs --------------------------------------------------------
    def keypair(self, name: str) -> Keypair:
        """This installation's keypair ``name``: made and allowed if it is missing."""
        path = self.secret_path(name)
        if not path.exists():
            self._make(name, replace=False)
        public, secret = _load(path)
        if secret is None:
            raise CurveKeyError(f"{path} holds no secret key")
        return Keypair(name, public, secret)

    def new(self, name: str, *, watch: bool = False, replace: bool = False) -> Keypair:
        """Make keypair ``name`` and allow it (to read the stream only, if ``watch``);
        ``replace`` an existing one (its old public key is no longer allowed)."""
        if not self._make(name, replace=replace, watch=watch):
            raise CurveKeyError(f"key {name} exists: replace it with --replace")
        return self.keypair(name)

    def _make(self, name: str, *, replace: bool, watch: bool = False) -> bool:
        public, secret = zmq.curve_keypair()
        path = self.secret_path(name)
        self._dir()
        if replace:
            write_private(path, _certificate(name, public, secret))
        elif not _create_private(path, _certificate(name, public, secret)):
            return False  # someone made it first: theirs it is
        write_private(self.public_path(name), _certificate(name, public))
        self.allow(name, public, watch=watch)
        log.info("made CURVE key %s (%s)", name, public.decode())
        return True

    # -- the allowlist -----------------------------------------------------------------------
    def allow(self, name: str, key: str | bytes, *, watch: bool = False) -> Path:
        """Allow public ``key`` as ``name`` (to read the stream only, if ``watch``), in
        place of any key of that name."""
        key = parse_key(key)
        which, other = (WATCHERS, ALLOWED) if watch else (ALLOWED, WATCHERS)
        path = self._dir(which) / f"{check_name(name)}.key"
        write_private(path, _certificate(name, key))
        with contextlib.suppress(FileNotFoundError):
            (self.root / other / path.name).unlink()
        return path

    def revoke(self, name: str) -> bool:
        """Take ``name`` off the allowlist (its keypair, if it is this installation's, stays);
        whether it was on it."""
        found = False
        for which in (ALLOWED, WATCHERS):
            with contextlib.suppress(FileNotFoundError):
                (self.root / which / f"{check_name(name)}.key").unlink()
                found = True
        return found

    def allows(self, key: bytes, *, watch: bool = False) -> bool:
        """Whether ``key`` (Z85) is allowed everything (``watch``: or to read the stream)."""
        return key in self._allowlist(ALLOWED) or (watch and key in self._allowlist(WATCHERS))

    def allowed_key(self, name: str) -> bytes | None:
        """The public key allowed (everything) as ``name``, if any."""
        path = self.root / ALLOWED / f"{check_name(name)}.key"
        return _load(path)[0] if path.exists() else None

    def _allowlist(self, which: str) -> frozenset[bytes]:
        try:
            files = sorted(p for p in (self.root / which).iterdir() if p.suffix == ".key")
        except FileNotFoundError:
            return frozenset()
        stamp = _stamp(files)
        with self._lock:
            cached = self._cache.get(which)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        keys = set()
        for path in files:
            try:
                keys.add(_load(path)[0])
            except (CurveKeyError, FileNotFoundError) as exc:
                log.warning("ignoring %s: %s", path.name, exc)
        found = frozenset(keys)
        with self._lock:
            self._cache[which] = (stamp, found)
        return found

    # -- servers a client trusts -------------------------------------------------------------
    def proxy_key_path(self, address: str) -> Path:
        """The file of the stream proxy's public key, for a client of ``address``: its entry
        in the allowlist; a proxy on this host gets its keypair made on first use."""
        path = self.root / ALLOWED / f"{PROXY}.key"
        if path.exists():
            return path
        if not is_local(address):
            raise CurveKeyError(
                f"the public key of the stream proxy at {address} is not known here: copy "
                f"its {PROXY}.key from the proxy's host and `remotelab keys allow FILE "
                f"--name {PROXY}`"
            )
        pair = self.keypair(PROXY)
        if not path.exists():  # made a moment ago by another process, not yet allowed
            self.allow(PROXY, pair.public)
        return path

    def proxy_key(self, address: str) -> bytes:
        """The stream proxy's public key (Z85), for a client of ``address``."""
        return _load(self.proxy_key_path(address))[0]

    # -- listing -----------------------------------------------------------------------------
    def entries(self) -> list[KeyEntry]:
        """This installation's keypairs, then the other allowed keys, by name."""
        if not self.root.exists():
            return []
        found: list[KeyEntry] = []
        own: dict[str, str] = {}
        for secret in sorted(self.root.glob("*.key_secret")):
            name, key = secret.name.removesuffix(".key_secret"), _load(secret)[0]
            own[name] = key.decode()
            public = self.public_path(name)
            access: Access = (
                "all" if self.allows(key) else "watch" if self.allows(key, watch=True) else "none"
            )
            private = all(is_private(p) for p in (public, secret) if p.exists())
            found.append(KeyEntry(name, key.decode(), True, access, private, public))
        listed: tuple[tuple[str, Access], ...] = ((ALLOWED, "all"), (WATCHERS, "watch"))
        for which, access in listed:
            for path in sorted((self.root / which).glob("*.key")):
                text = _load(path)[0].decode()
                if own.get(path.stem) != text:
                    found.append(KeyEntry(path.stem, text, False, access, is_private(path), path))
        return found


class Gatekeeper:
    """The ZAP handler of one zmq context: on a CURVE server socket of ``domain``
    :data:`CONTROL` or :data:`PUBLISH`, only clients allowed everything get in; on
    :data:`SUBSCRIBE`, watchers too. Start it before the sockets bind; stop it before the
    context is terminated."""

    def __init__(self, context: zmq.Context[Any], keys: CurveKeys):
        self.keys = keys
        self._refused: set[tuple[str, bytes]] = set()
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        for domain in (CONTROL, PUBLISH, SUBSCRIBE):  # "*" is no wildcard there
            self._auth.configure_curve_callback(domain, self)

    def callback(self, domain: str, key: bytes) -> bool:
        """Whether the client with public ``key`` (Z85) may connect to a socket of ``domain``."""
        try:
            ok = domain in (CONTROL, PUBLISH, SUBSCRIBE) and self.keys.allows(
                key, watch=domain == SUBSCRIBE
            )
        except Exception as exc:  # never let a broken file open the door
            log.warning("refusing a CURVE client on %s: %s", domain, exc)
            return False
        if not ok and (domain, key) not in self._refused:
            if len(self._refused) > 1000:
                self._refused.clear()
            self._refused.add((domain, key))
            log.warning("refused a client of %s with a key not allowed: %s", domain, key.decode())
        return ok

    def stop(self) -> None:
        self._auth.stop()


def _stamp(files: list[Path]) -> tuple[tuple[str, int, int, int], ...]:
    """What tells whether files changed: each one's name, inode, time and size."""
    found = []
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            found.append((path.name, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(found)


def _certificate(name: str, public: bytes, secret: bytes | None = None) -> bytes:
    kind = "secret" if secret else "public"
    lines = [
        f"#   remotelab CURVE {kind} key {name}, made {datetime.now(UTC).isoformat()}",
        "#   ZeroMQ CURVE certificate"
        + ("; never give it to anyone" if secret else ": give it to the peers that trust it"),
        "",
        "metadata",
        f'    name = "{name}"',
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return ("\n".join(lines) + "\n").encode()


def _load(path: Path) -> tuple[bytes, bytes | None]:
    """A certificate's public (checked) and secret keys; a secret readable by others is made
    private first."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        if not path.exists():
            raise FileNotFoundError(f"no key file {path}") from None
        raise CurveKeyError(f"{path.name}: {exc}") from None
    if secret is not None:
        _tighten(path, 0o600)
    return parse_key(public), secret


def _tighten(path: Path, mode: int) -> None:
    """Make ``path`` readable by its owner only if it is not."""
    if is_private(path):
        return
    try:
        path.chmod(mode)
    except OSError as exc:
        raise CurveKeyError(f"{path} can be read by others: make it private ({exc})") from None
    log.warning("%s could be read by others: made it %o", path, mode)


def _create_private(path: Path, data: bytes) -> bool:
    """Create ``path`` (0600) holding ``data`` unless it exists; whether this call made it.
    Readers never see it half written."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.link(partial, path)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


__all__ = [
    "ALLOWED",
    "CLIENT",
    "CONTROL",
    "PROXY",
    "PUBLISH",
    "SUBSCRIBE",
    "WATCHERS",
    "CurveKeyError",
    "CurveKeys",
    "Gatekeeper",
    "KeyEntry",
    "Keypair",
    "check_name",
    "is_local",
    "load_public",
    "parse_key",
    "worker_key_name",
]
