"""An Azurite the tests can stop and start: blob and table as two processes, one data folder.

``shared.dev.azurite`` starts the all-in-one ``azurite``; here each service runs on its own
(``azurite-blob``, ``azurite-table``, same flags, same ports for the whole session, same
``--location``), so a test can take down the Table service alone, or both. Stopping sends
SIGINT, on which Azurite saves its metadata before it exits, so a restart finds every
acknowledged write, as a real account would. (On SIGTERM, what ``shared.dev.azurite.stop``
sends, it exits at once and loses the writes of its last autosave interval, about 5 s.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.dev import azurite

Service = Literal["blob", "table"]
SERVICES: tuple[Service, ...] = ("blob", "table")


@dataclass
class Emulator:
    """Azurite's blob and table services on fixed ports over one persistent folder."""

    location: Path
    ports: azurite.Ports = field(default_factory=lambda: azurite.Ports(*azurite.free_ports(3)))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    outages: int = 0
    """How many times a service was taken down (the report counts faults injected)."""
    restarts: list[threading.Thread] = field(default_factory=list)

    @property
    def connection_string(self) -> str:
        return self.ports.connection_string()

    def port(self, service: Service) -> int:
        return self.ports.blob if service == "blob" else self.ports.table

    def start(self, *services: Service, timeout: float = 30.0) -> None:
        """Start the services that are down (all by default) and wait until they accept connections."""
        for service in services or SERVICES:
            if service in self.processes and self.processes[service].poll() is None:
                continue
            self.location.mkdir(parents=True, exist_ok=True)
            log = (self.location / f"azurite-{service}.log").open("ab")
            self.processes[service] = subprocess.Popen(
                [
                    str(azurite.BINARY.with_name(f"azurite-{service}")),
                    "--silent",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--location",
                    str(self.location),
                    f"--{service}Port",
                    str(self.port(service)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        for service in services or SERVICES:
            while not azurite.listening(self.port(service)):
                if self.processes[service].poll() is not None:
                    raise RuntimeError(f"azurite-{service} exited; see {self.location}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"azurite-{service} did not start within {timeout:.0f}s")
                time.sleep(0.05)

    def stop(self, *services: Service) -> None:
        """Take services down (all by default): connections are refused until ``start``."""
        for service in services or SERVICES:
            process = self.processes.pop(service, None)
            if process is not None:
                _interrupt(process)
                self.outages += 1

    def outage(self, seconds: float, *services: Service) -> threading.Thread:
        """Stop the services now and start them again ``seconds`` later, in the background."""
        self.stop(*services)

        def restart() -> None:
            time.sleep(seconds)
            self.start(*services)

        thread = threading.Thread(target=restart, name="azurite-restart", daemon=True)
        thread.start()
        self.restarts.append(thread)
        return thread

    def settle(self) -> None:
        """Wait for every pending restart, then make sure every service is up."""
        for thread in self.restarts:
            thread.join()
        self.restarts.clear()
        self.start()

    def close(self) -> None:
        for process in self.processes.values():
            _interrupt(process)
        self.processes.clear()


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    """Stop an Azurite service the way Ctrl-C does (it saves first); kill it if it hangs."""
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        azurite.stop(process)
