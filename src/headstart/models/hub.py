"""Online hubs without the minute of retries: tell quickly whether the Hugging Face hub is reachable, and when it
is not, switch huggingface_hub to offline mode so cached weights still load at once and missing ones fail at once.

    with offline_mode(hub_unreachable()):
        model = timm.create_model("resnet18", pretrained=True)
"""
from __future__ import annotations

import contextlib
import functools
import os
import socket


def hub_unreachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """HF_HUB_OFFLINE set, or no TCP connection to the hub within `timeout` s (instead of a minute of retries)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True
    return not _reachable(host, timeout)


@functools.lru_cache(maxsize=None)
def _reachable(host: str, timeout: float) -> bool:
    """Probed once per process: every build of a hub model (features, each unit, export) would repeat it."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_mode(on: bool):
    """huggingface_hub's offline switch for the duration (it reads its module constant at call time)."""
    from huggingface_hub import constants
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = on or old
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old
