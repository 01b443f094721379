"""Everything the WebSocket proxy deploys besides ``app.py``."""
