"""tornado-chat: a self-hosted real-time chat server on Tornado."""

__version__ = "0.1.0"
