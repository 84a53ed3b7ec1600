"""How signaling travels between browser and kernel: the widget comm, or the server extension's bus."""

from .bus import BusClient, bus_file, get_bus, reset_bus
from .route import SignalRoute

# In a kernel started by a server with the extension, connect now rather than at the first widget: the bus is one
# long-lived connection per kernel, part of the engine's baseline like the engine thread itself.
if bus_file() is not None:
    get_bus(timeout=1.0)

__all__ = ["BusClient", "SignalRoute", "bus_file", "get_bus", "reset_bus"]
