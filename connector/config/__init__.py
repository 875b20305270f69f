"""User configuration: one validated file (path in `CONNECTOR_CONFIG`)."""

from connector.config.model import Config

__all__ = ["Config"]
