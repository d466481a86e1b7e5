"""A network namespace joined to the root namespace by a veth pair, and faults on the path between
them: a partition and packet loss made with iptables, latency with netem or, where the kernel has
no netem, with tests/delayer.py.

Everything lives inside the namespace (its interface, its iptables rules, the delayer process), so
`destroy()` removes it all at once, and a test's faults touch nothing outside its own namespace.
Names and the /30 subnet derive from the process id and a counter, so tests running at once on one
machine do not collide.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_counter = itertools.count()
_DELAYER = Path(__file__).with_name("delayer.py")


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=30)


def namespaces_unavailable() -> str | None:
    """Why this machine cannot make network namespaces (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"tsprobe{os.getpid()}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


class Netns:
    """`ip netns` NAME with veth `host_if` (address `host_ip`, root namespace) paired to `ns_if`
    (address `ns_ip`, inside the namespace)."""

    def __init__(self) -> None:
        n = next(_counter)
        pid = os.getpid()
        self.name = f"tsnet{pid}-{n}"
        self.host_if = f"tsh{pid % 100000}x{n}"
        self.ns_if = f"tsn{pid % 100000}x{n}"
        block = (pid * 8 + n) % (64 * 256)  # a /30 in 10.192.0.0/10 - 10.255.255.255
        base = (10 << 24) | (192 << 16) | (block << 2)
        self.host_ip = _dotted(base + 1)
        self.ns_ip = _dotted(base + 2)
        self.subnet = f"{_dotted(base)}/30"
        self._delayer: subprocess.Popen[bytes] | None = None

    def create(self) -> Netns:
        reason = namespaces_unavailable()
        if reason is not None:
            pytest.skip(reason)
        if shutil.which("iptables") is None:
            pytest.fail("iptables is not installed; scripts/ci-services.sh installs it")
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _run("ip", "link", "set", self.ns_if, "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            self._exec("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            self._exec("ip", "link", "set", self.ns_if, "up")
            self._exec("ip", "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        """Remove the namespace, its rules and its interface (deleting one end of a veth pair deletes
        both); safe to call twice."""
        self._stop_delayer()
        if shutil.which("ip") is None:
            return  # nothing was made
        _run("ip", "netns", "del", self.name, check=False)
        _run("ip", "link", "del", self.host_if, check=False)

    @property
    def prefix(self) -> list[str]:
        """Run a command inside the namespace: prefix + [command, ...]."""
        return ["ip", "netns", "exec", self.name]

    def _exec(self, *command: str) -> None:
        _run(*self.prefix, *command)

    def _iptables(self, *rule: str) -> None:
        self._exec("iptables", "-w", *rule)

    def _both_ways(self, port: int, *match_and_target: str) -> None:
        """Append a rule for the TCP traffic between the namespace and `port` in the root namespace,
        in both directions; everything else (a test reaching a server in the namespace) passes."""
        self._iptables(
            "-A", "OUTPUT", "-p", "tcp", "-d", self.host_ip, "--dport", str(port), *match_and_target
        )
        self._iptables(
            "-A", "INPUT", "-p", "tcp", "-s", self.host_ip, "--sport", str(port), *match_and_target
        )

    def partition(self, port: int) -> None:
        """Drop every packet to and from `port`: silent, no reset, like a cut cable or a firewall."""
        self._both_ways(port, "-j", "DROP")

    def lose(self, port: int, probability: float) -> None:
        """Drop each packet to and from `port` with `probability`, independently."""
        self._both_ways(
            port, "-m", "statistic", "--mode", "random", "--probability", f"{probability}", "-j", "DROP"
        )

    def delay(self, port: int, seconds: float) -> str:
        """Hold each packet to and from `port` for `seconds` (so a round trip takes twice that).
        netem when the kernel has it; otherwise NFQUEUE and tests/delayer.py. Returns which."""
        if self._netem(seconds):
            return "netem"
        queue = 1000 + next(_counter) % 60000
        self._delayer = subprocess.Popen(
            [*self.prefix, sys.executable, str(_DELAYER), str(queue), str(seconds)],
            stdout=subprocess.PIPE,
        )
        assert self._delayer.stdout is not None
        ready = self._delayer.stdout.readline()
        assert ready.strip() == b"bound", f"the delayer did not start: {ready!r}"
        self._both_ways(port, "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass")
        return "nfqueue"

    def _netem(self, seconds: float) -> bool:
        """Delay every packet leaving either end of the veth pair with netem, if this kernel has it.
        netem shapes whole interfaces: the test's own calls to a server in the namespace are slower
        too."""
        delay = f"{seconds * 1000:.0f}ms"
        inside = [*self.prefix, "tc", "qdisc", "add", "dev", self.ns_if, "root", "netem", "delay", delay]
        if _run(*inside, check=False).returncode != 0:
            return False
        _run("tc", "qdisc", "add", "dev", self.host_if, "root", "netem", "delay", delay)
        return True

    def heal(self) -> None:
        """Remove every fault: the rules, netem, the delayer."""
        self._iptables("-F", "INPUT")
        self._iptables("-F", "OUTPUT")
        _run(*self.prefix, "tc", "qdisc", "del", "dev", self.ns_if, "root", check=False)
        _run("tc", "qdisc", "del", "dev", self.host_if, "root", check=False)
        self._stop_delayer()

    def _stop_delayer(self) -> None:
        if self._delayer is not None and self._delayer.poll() is None:
            self._delayer.terminate()
            try:
                self._delayer.wait(5)
            except subprocess.TimeoutExpired:
                self._delayer.kill()
                self._delayer.wait()
        if self._delayer is not None and self._delayer.stdout is not None:
            self._delayer.stdout.close()
        self._delayer = None


def _dotted(address: int) -> str:
    return ".".join(str((address >> shift) & 0xFF) for shift in (24, 16, 8, 0))
