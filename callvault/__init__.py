"""callvault: call-recording governance pipeline (composition root).

This package wires ``streams``, ``storage`` and ``policies`` together: settings,
the command line, shared value types and the root error.
"""

from callvault.errors import CallvaultError, ConfigError

__version__ = "0.1.0"
__all__ = ["CallvaultError", "ConfigError", "__version__"]
