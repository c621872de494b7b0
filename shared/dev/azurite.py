"""Start and stop Azurite, the local Azure Storage emulator (used by `make` and the tests).

Azurite is installed from npm (pinned in package.json) into ``node_modules``. It is
always started with ``--disableTelemetry``: this machine has no route to the internet.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.settings import AZURITE_KEY

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "node_modules" / ".bin" / "azurite"


@dataclass(frozen=True, slots=True)
class Ports:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002

    def connection_string(self, host: str = "127.0.0.1") -> str:
        account = "devstoreaccount1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://{host}:{self.blob}/{account};"
            f"QueueEndpoint=http://{host}:{self.queue}/{account};"
            f"TableEndpoint=http://{host}:{self.table}/{account};"
        )


def free_ports(count: int = 3) -> list[int]:
    """Ports the OS says are free right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def start(
    location: Path, ports: Ports, *, log: Path | None = None, timeout: float = 30.0
) -> subprocess.Popen[bytes]:
    """Start Azurite in the background and wait until all three services accept connections.

    Raises:
        RuntimeError: Azurite is not installed or did not come up in ``timeout`` seconds.
    """
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} not found; run `npm install` (or `make azurite`) first")
    location.mkdir(parents=True, exist_ok=True)
    out = (log or location / "azurite.log").open("ab")
    process = subprocess.Popen(
        [
            str(BINARY),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--location",
            str(location),
            "--blobPort",
            str(ports.blob),
            "--queuePort",
            str(ports.queue),
            "--tablePort",
            str(ports.table),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not all(listening(p) for p in (ports.blob, ports.queue, ports.table)):
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with {process.returncode}; see {location}/azurite.log")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Azurite did not start within {timeout:.0f}s")
        time.sleep(0.1)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.dev.azurite start|stop``: the background Azurite `make azurite` uses."""
    parser = argparse.ArgumentParser(prog="python -m shared.dev.azurite", description=main.__doc__)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--location", type=Path, default=ROOT / ".azurite")
    args = parser.parse_args(argv)
    ports = Ports()
    pid_file = args.location / "azurite.pid"
    running = listening(ports.blob) and listening(ports.table)
    if args.action == "status":
        print("running" if running else "stopped")
        return 0 if running else 1
    if args.action == "start":
        if running:
            print(f"Azurite already running on ports {ports.blob}-{ports.table}")
            return 0
        process = start(args.location, ports)
        pid_file.write_text(str(process.pid))
        print(f"Azurite started (pid {process.pid}) on ports {ports.blob}-{ports.table}")
        print(f"  data and log in {args.location}")
        return 0
    if not pid_file.exists():
        print(
            "Azurite is not running (no pid file)"
            if not running
            else "Azurite was not started by make; leaving it"
        )
        return 0
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        print(f"Azurite stopped (pid {pid})")
    except ProcessLookupError:
        print("Azurite was not running")
    pid_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
