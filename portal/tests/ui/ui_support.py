"""Helpers shared by the UI tests."""

from __future__ import annotations

import random
import socket

PORT_RANGE = (18300, 18599)  # this suite's share of the test ports


def free_ui_port() -> int:
    ports = list(range(*PORT_RANGE))
    random.shuffle(ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")
