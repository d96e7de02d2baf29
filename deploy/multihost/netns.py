"""Hosts on one machine: a Linux bridge and one network namespace per host, each with
its own address on a /24 (``10.213.0.0/24`` unless taken), joined to the bridge by a
veth pair whose outer end stays in this namespace, so ``cut`` can pull one host's cable.

Every name carries ``FAMILY`` and a random run tag (bridge ``dmhTAGbr``, veth
``dmhTAGvN``, namespaces ``dmhTAG-HOST``), so parallel runs never collide. A run holds
an flock on ``LOCK_DIR/TAG.lock`` for its life; ``clean_leftovers`` removes only the
objects of tags whose lock nobody holds (a run that was SIGKILLed, or lost power), with
the processes still inside their namespaces. The kernel limits interface names to 15
bytes: ``dmh`` + 6 + ``v`` + 3 digits fits.
"""

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FAMILY",
    "LOCK_DIR",
    "Host",
    "HostNetwork",
    "NamespaceError",
    "clean_leftovers",
    "leftovers",
    "unsupported_reason",
]

FAMILY = "dmh"  # deoss multihost
TAG_LENGTH = 6
LOCK_DIR = Path("/run/deoss-multihost")
DEFAULT_SUBNETS = tuple(ipaddress.IPv4Network(f"10.213.{n}.0/24") for n in range(256))
CAP_NET_ADMIN = 12
IP_TIMEOUT = 30.0


class NamespaceError(RuntimeError):
    def __init__(self, command: Sequence[str], reason: str) -> None:
        super().__init__(f"{' '.join(command)}: {reason}")
        self.command, self.reason = tuple(command), reason


def _ip(*args: str, check: bool = True) -> str:
    command = ["ip", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=IP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NamespaceError(command, str(exc)) from None
    if check and done.returncode != 0:
        raise NamespaceError(command, done.stderr.strip() or f"exit {done.returncode}")
    return done.stdout


def _json(*args: str) -> list[dict[str, Any]]:
    text = _ip("-j", *args).strip()
    found: list[dict[str, Any]] = json.loads(text) if text else []
    return found


def _namespaces() -> list[str]:
    return [str(entry["name"]) for entry in _json("netns", "list")]


def _links() -> list[str]:
    return [str(entry["ifname"]) for entry in _json("link", "show")]


def _new_tag() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(6))


def _tag_of(name: str) -> str | None:
    if not name.startswith(FAMILY) or len(name) < len(FAMILY) + TAG_LENGTH:
        return None
    return name[len(FAMILY) : len(FAMILY) + TAG_LENGTH]


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # "chain", "miner03", "gateway"
    namespace: str
    veth: str  # the outer end, on the bridge, in the root namespace
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host; with setpriv, it gets SIGTERM when the process
        that started it dies (the kernel counts the starting thread: start it from the
        thread that lives longest)."""
        pdeath = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
        return ["ip", "netns", "exec", self.namespace, *pdeath, *argv]


def _capable() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return os.geteuid() == 0


def unsupported_reason() -> str | None:
    """Why this machine cannot make the namespaces (None: it can), found by trying."""
    if shutil.which("ip") is None:
        return "the `ip` program (iproute2) is not installed"
    if not _capable():
        return f"this process (uid {os.geteuid()}) lacks CAP_NET_ADMIN: run it as root"
    tag = _new_tag()
    prefix, lock = f"{FAMILY}{tag}", LOCK_DIR / f"{tag}.lock"
    try:
        # Locked like a run, so that a probe killed half-way is a left-over to clean.
        with _locked(lock):
            try:
                _ip("netns", "add", f"{prefix}-probe")
                _ip("link", "add", f"{prefix}br", "type", "bridge")
            except NamespaceError as exc:
                return f"`{' '.join(exc.command)}` fails here: {exc.reason}"
            finally:
                _ip("netns", "del", f"{prefix}-probe", check=False)
                _ip("link", "del", f"{prefix}br", check=False)
                lock.unlink(missing_ok=True)
    except OSError as exc:
        return f"cannot lock {lock}: {exc}"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield file


def _held(tag: str) -> bool:
    """Whether a live run holds ``tag``; a tag without a lock file is someone else's."""
    path = LOCK_DIR / f"{tag}.lock"
    try:
        file = open(path)  # noqa: SIM115
    except FileNotFoundError:
        return True
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def leftovers(tag: str | None = None) -> list[str]:
    """The namespaces and links of ``tag`` (every FAMILY tag: None) that exist now."""
    names = [*_namespaces(), *_links()]
    return [n for n in names if _tag_of(n) is not None and (tag is None or _tag_of(n) == tag)]


def _kill_inside(namespace: str) -> None:
    for pid in _ip("netns", "pids", namespace, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _remove(tag: str) -> list[str]:
    """Removes every object of ``tag``, killing what runs inside; the failures."""
    for namespace in (n for n in _namespaces() if _tag_of(n) == tag):
        _kill_inside(namespace)
        with contextlib.suppress(NamespaceError):
            _ip("netns", "del", namespace)
    for link in (n for n in _links() if _tag_of(n) == tag):
        with contextlib.suppress(NamespaceError):
            _ip("link", "del", link)
    failures = leftovers(tag)
    if not failures:
        (LOCK_DIR / f"{tag}.lock").unlink(missing_ok=True)
    return failures


def clean_leftovers() -> list[str]:
    """Removes what dead runs left (their lock is free); returns the tags cleaned."""
    cleaned = []
    for tag in sorted({t for t in map(_tag_of, leftovers()) if t is not None}):
        if not _held(tag):
            _remove(tag)
            cleaned.append(tag)
    return cleaned


def _used_subnets() -> set[ipaddress.IPv4Network]:
    used = set()
    for link in _json("addr", "show"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                used.add(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}").network)
    return used


def _free_subnet(wanted: ipaddress.IPv4Network | None, count: int) -> ipaddress.IPv4Network:
    used = _used_subnets()
    candidates = (wanted,) if wanted is not None else DEFAULT_SUBNETS
    for subnet in candidates:
        if subnet.num_addresses - 3 < count:
            raise NamespaceError(["subnet", str(subnet)], f"too small for {count} hosts")
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NamespaceError(["subnet", str(wanted or "10.213.0.0/16")], "every /24 is in use")


@dataclass(slots=True)
class HostNetwork:
    """The bridge and the hosts of one run; ``create`` makes them, ``teardown`` removes
    them (safe to call twice, and after a half-made ``create``)."""

    tag: str = field(default_factory=_new_tag)
    subnet: ipaddress.IPv4Network | None = None
    hosts: dict[str, Host] = field(default_factory=dict)
    _lock: IO[str] | None = None

    @property
    def bridge(self) -> str:
        return f"{FAMILY}{self.tag}br"

    @property
    def gateway_address(self) -> str:
        """The bridge's own address: how this (root) namespace reaches the hosts."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def create(self, names: Sequence[str], subnet: str | None = None) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK_DIR / f"{self.tag}.lock", "a+")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # held until teardown: we are alive
        try:
            wanted = ipaddress.IPv4Network(subnet) if subnet else None
        except ValueError as exc:
            raise NamespaceError(["subnet", str(subnet)], f"not an IPv4 network: {exc}") from None
        # Two runs choosing at once would pick the same /24: choose and claim in turn.
        with _locked(LOCK_DIR / "subnets.lock"):
            self.subnet = _free_subnet(wanted, len(names))
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip(
                "addr", "add", f"{self.gateway_address}/{self.subnet.prefixlen}", "dev", self.bridge
            )
        _ip("link", "set", self.bridge, "up")
        for index, name in enumerate(names):
            self._add_host(index, name)

    def _add_host(self, index: int, name: str) -> None:
        assert self.subnet is not None
        host = Host(
            name=name,
            namespace=f"{FAMILY}{self.tag}-{name}",
            veth=f"{FAMILY}{self.tag}v{index}",
            address=str(self.subnet.network_address + 2 + index),
        )
        self.hosts[name] = host
        _ip("netns", "add", host.namespace)
        _ip(
            "link",
            "add",
            host.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.namespace,
        )
        _ip("link", "set", host.veth, "master", self.bridge, "up")
        inside = ("-n", host.namespace)
        _ip(*inside, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "link", "set", "lo", "up")

    def cut(self, name: str) -> None:
        """Pulls host ``name``'s cable: nothing reaches it, nothing leaves it."""
        _ip("link", "set", self.hosts[name].veth, "down")

    def restore(self, name: str) -> None:
        _ip("link", "set", self.hosts[name].veth, "up")

    def teardown(self) -> list[str]:
        """Kills whatever still runs inside the hosts, removes them and the bridge;
        returns what could not be removed (nothing, normally)."""
        failures = _remove(self.tag)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        return failures
