"""User configuration: one validated file (path in `CONNECTOR_CONFIG`).

`load_config()` reads the file, interpolates `${VAR}` references from the environment and
validates it (every error at once, as "dotted.path: message" lines in `ConfigError`).
"""

from connector.config.expression import ExpressionError, compile_expression
from connector.config.loader import ConfigError, load_config, parse_config
from connector.config.model import Config

__all__ = [
    "Config",
    "ConfigError",
    "ExpressionError",
    "compile_expression",
    "load_config",
    "parse_config",
]
