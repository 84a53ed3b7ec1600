"""How media and data travel: WebRTC (aiortc) or the relay through the Jupyter server."""
