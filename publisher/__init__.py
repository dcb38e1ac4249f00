"""publisher: turn a stream of articles into feeds, a dated static site and an email digest."""

import logging

__version__ = "0.1.0"

# Library code never configures logging; the CLI and scheduler do.
logging.getLogger(__name__).addHandler(logging.NullHandler())
