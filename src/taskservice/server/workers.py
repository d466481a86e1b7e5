"""`--workers N`: N server processes on the same ports, so one host uses all its cores.

Each worker is a complete, stateless replica (its own event loop, pool and event window) that binds
the gRPC and HTTP ports with SO_REUSEPORT; the kernel spreads incoming connections across them.
They share state only through PostgreSQL, exactly as replicas on different hosts do, which is why
more than one worker needs the PostgreSQL store. This parent process only supervises: it forwards
SIGTERM/SIGINT as SIGTERM (each worker then drains gracefully) and restarts a worker that dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess

import structlog

from taskservice.server.config import Settings

log = structlog.get_logger(__name__)

_RESTART_PAUSE = 1.0
_PR_SET_PDEATHSIG = 1


def _fixed_port(addr: str) -> str:
    """Resolve port 0 once in the parent, so that every worker binds the same port."""
    host, _, port = addr.rpartition(":")
    if int(port) != 0:
        return addr
    bare = host.strip("[]") or "0.0.0.0"
    with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET) as sock:
        sock.bind((bare, 0))
        return f"{host}:{sock.getsockname()[1]}"


def _worker_main(settings: Settings) -> None:
    """Entry point of one worker process."""
    from taskservice.server.app import serve
    from taskservice.telemetry.observability import configure_logging

    os.setpgrp()  # Ctrl-C reaches only the parent, which turns it into one SIGTERM per worker
    with contextlib.suppress(OSError, AttributeError):  # Linux: end with the parent, even on kill -9
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    configure_logging(settings.log_level, settings.log_format)
    serve(settings, reuse_port=True)


def serve_workers(settings: Settings) -> int:
    """Run `settings.workers` workers until SIGTERM/SIGINT; returns the exit code."""
    if not settings.store_url.startswith(("postgresql://", "postgres://")):
        raise ValueError("--workers above 1 needs the PostgreSQL store: workers share state only through it")
    worker_settings = replace(
        settings,
        workers=1,
        grpc_addr=_fixed_port(settings.grpc_addr),
        http_addr=_fixed_port(settings.http_addr),
    )
    context = multiprocessing.get_context("spawn")  # gRPC does not survive fork

    def launch(index: int) -> BaseProcess:
        process = context.Process(target=_worker_main, args=(worker_settings,), name=f"worker-{index}")
        process.start()
        log.info("worker.started", worker=index, pid=process.pid)
        return process

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [launch(i) for i in range(settings.workers)]
    while not stopping:
        time.sleep(0.2)
        for index, process in enumerate(workers):
            if not process.is_alive() and not stopping:
                log.warning("worker.died", worker=index, pid=process.pid, exitcode=process.exitcode)
                time.sleep(_RESTART_PAUSE)
                workers[index] = launch(index)
    for process in workers:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.grace_period + 5
    for process in workers:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    return 0
