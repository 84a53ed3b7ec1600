"""How signaling travels between browser and kernel: the widget comm, or the server extension's bus."""

from .bus import BusClient, bus_file, get_bus, reset_bus
from .route import SignalRoute

__all__ = ["BusClient", "SignalRoute", "bus_file", "get_bus", "reset_bus"]
