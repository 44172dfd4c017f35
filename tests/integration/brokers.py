"""The brokers the integration month runs on, and the outages a test can cause.

Redis: the tests' own `redis-server` (never the shared one). RabbitMQ: the local server at
127.0.0.1:5672 (CI runs one), with a queue (and its exchange) of each test's own, so parallel
runs on one vhost never take each other's tasks; it is required, and its absence fails the test
with a clear message. An outage SIGKILLs a private `redis-server` (append-only, as in
docker-compose.yml) and starts it again on the same port and data; with RabbitMQ it also cuts
every connection to the broker through a TCP proxy (RabbitMQ itself is shared and stays up,
which is what a restarted RabbitMQ looks like from the workers: connections reset, refused,
then accepted, with durable queues and their messages intact).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from kombu import Connection
from kombu.utils.url import maybe_sanitize_url

RABBITMQ_URL = os.environ.get("BILLING_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
START_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} in time")


@dataclass
class RedisServer:
    """A `redis-server` of one test, append-only like production's: killed, it comes back with
    its queue, its unacknowledged deliveries, its results and its locks."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "the tests need redis-server on PATH (Debian: apt-get install redis)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait_listening(self.port, "the test's redis-server")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write of any kind."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self.kill()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a server; `cut` resets every connection and refuses new
    ones until `restore` (the server behind it is never touched)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._guard = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._guard:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            # Both ends see the connection end at once, as when the broker's process dies
            # (shutdown also wakes the pump blocked reading it; close alone would not).
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._guard:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def require_rabbitmq(url: str = RABBITMQ_URL) -> None:
    """Fail (never skip) when RabbitMQ does not answer: CI runs it, so its absence is a broken
    environment, not a reason to test less."""
    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # any failure to connect says the same
        pytest.fail(
            f"RabbitMQ at {maybe_sanitize_url(url)} is unreachable ({exc!r}): the integration "
            "tests run the month "
            "on RabbitMQ too (guest/guest on 127.0.0.1:5672, or BILLING_TEST_RABBITMQ_URL)",
            pytrace=False,
        )


def delete_rabbitmq_queue(queue: str, url: str = RABBITMQ_URL) -> None:
    """Remove the test's queue and its exchange (Celery declares both, durable)."""
    with Connection(url, connect_timeout=3) as connection:
        channel = connection.channel()
        with suppress(Exception):
            channel.queue_delete(queue)
        channel = connection.channel()
        with suppress(Exception):
            channel.exchange_delete(queue)


@dataclass
class Broker:
    """The settings a test's workers get for their broker (merged into `make_cluster`)."""

    name: str
    settings: dict[str, Any]


@contextmanager
def broker_for(name: str) -> Iterator[Broker]:
    """`redis`: the tests' Redis is the broker (the default). `rabbitmq`: the local RabbitMQ,
    with a queue of this test's own, deleted afterwards."""
    if name == "redis":
        yield Broker(name, {})
        return
    require_rabbitmq()
    queue = f"billing-it-{uuid.uuid4().hex[:12]}"
    try:
        yield Broker(name, {"broker_url": RABBITMQ_URL, "broker_queue": queue})
    finally:
        delete_rabbitmq_queue(queue)


def through_port(url: str, port: int) -> str:
    """`url` with its host and port replaced by 127.0.0.1:`port` (user, password and vhost
    kept): the broker as reached through the proxy."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Outage:
    """The settings of a month that loses its Redis (and, with RabbitMQ, its broker) mid-close."""

    broker: str
    redis: RedisServer
    proxy: TcpProxy | None
    queue: str | None

    @property
    def settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {"redis_url": self.redis.url}
        if self.proxy is not None:
            values["broker_url"] = through_port(RABBITMQ_URL, self.proxy.port)
            values["broker_queue"] = self.queue
        return values

    def begin(self) -> None:
        self.redis.kill()
        if self.proxy is not None:
            self.proxy.cut()

    def end(self) -> None:
        self.redis.start()
        if self.proxy is not None:
            self.proxy.restore()


@contextmanager
def outage_for(name: str, directory: Path) -> Iterator[Outage]:
    if name == "rabbitmq":
        require_rabbitmq()
    redis_server = RedisServer(directory)
    redis_server.start()
    proxy = queue = None
    if name == "rabbitmq":
        target = urlsplit(RABBITMQ_URL)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
        proxy.restore()
        queue = f"billing-it-{uuid.uuid4().hex[:12]}"
    try:
        yield Outage(name, redis_server, proxy, queue)
    finally:
        redis_server.stop()
        if proxy is not None:
            proxy.cut()
        if queue is not None:
            delete_rabbitmq_queue(queue)
