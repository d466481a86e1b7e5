"""Delay packets by a fixed time, for kernels without netem: `python delayer.py QUEUE SECONDS`.

An iptables rule sends packets to NFQUEUE number QUEUE; this process receives each one over
nfnetlink (metadata only, the packet stays in the kernel) and gives it its ACCEPT verdict SECONDS
later, so every packet really waits in the kernel's path, in order. Plain netlink through the
standard library: no libnetfilter_queue. It prints "bound" once it receives packets, and runs until
terminated; packets still held then are dropped by the kernel, and with `--queue-bypass` on the
rule new ones pass undelayed once no process is bound.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def _attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(kind: int, queue: int, attributes: bytes, flags: int = NLM_F_REQUEST) -> bytes:
    # nlmsghdr (native order), then nfgenmsg: family, version 0, the queue number (big-endian).
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", queue) + attributes
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, 0, 0) + body


def _attributes(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while len(data) >= 4:
        length, kind = struct.unpack_from("=HH", data)
        if length < 4:
            break
        found[kind & 0x7FFF] = data[4:length]
        data = data[(length + 3) & ~3 :]
    return found


def _bind(sock: socket.socket, queue: int) -> None:
    for attributes in (
        _attribute(NFQA_CFG_CMD, struct.pack(">BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)),
        _attribute(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)),
    ):
        sock.send(_message(NFQNL_MSG_CONFIG, queue, attributes, NLM_F_REQUEST | NLM_F_ACK))
        answer = sock.recv(65536)
        kind = struct.unpack_from("=H", answer, 4)[0]
        error = struct.unpack_from("=i", answer, 16)[0] if kind == NLMSG_ERROR else 0
        if error:
            raise OSError(-error, f"binding NFQUEUE {queue} failed")


def _packet_ids(data: bytes) -> list[int]:
    """The ids of the queued packets in one netlink read (several messages may share it)."""
    ids = []
    while len(data) >= 16:
        length, kind = struct.unpack_from("=IH", data)
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            header = _attributes(data[20:length]).get(NFQA_PACKET_HDR)
            if header is not None:
                ids.append(struct.unpack_from(">I", header)[0])
        data = data[(length + 3) & ~3 :]
    return ids


async def delay(queue: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((0, 0))
    _bind(sock, queue)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()

    def accept(packet_id: int) -> None:
        verdict = _attribute(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, packet_id))
        sock.send(_message(NFQNL_MSG_VERDICT, queue, verdict))

    def received() -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        for packet_id in _packet_ids(data):
            loop.call_later(seconds, accept, packet_id)

    loop.add_reader(sock.fileno(), received)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("bound", flush=True)
    await stop.wait()
    sock.close()


if __name__ == "__main__":
    asyncio.run(delay(int(sys.argv[1]), float(sys.argv[2])))
