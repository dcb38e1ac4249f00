"""`publisher serve`: the output folder as a site, plus subscribe, confirm and unsubscribe."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn

from publisher.errors import ConfigError
from publisher.server.app import create_app
from publisher.settings import Settings

__all__ = ["create_app", "listen", "serve"]


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the server until SIGINT or SIGTERM; `ready` gets its URL once it listens.

    Mails already promised (confirmations, welcomes) are sent before it returns.
    """
    app = create_app(settings)
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    sock = listen(settings, host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        proxy_headers=False,  # create_app trusts [server] trusted_proxies itself
        server_header=False,
        access_log=False,  # its lines would carry confirm and unsubscribe tokens
        log_config=None,  # the CLI configures logging
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    if ready is not None:
        shown = f"[{host}]" if ":" in host else host
        ready(f"http://{shown}:{bound}/")
    server.run(sockets=[sock])


def listen(settings: Settings, host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn; ConfigError naming the setting when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every response (headers, then body) waits ~40 ms on the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening from here on: the URL is printed before uvicorn has started (its start-up
        # deletes expired sign-ups first), and a client that comes at once must be queued,
        # not refused.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            [f"[server] host/port: cannot listen on {host}:{port} ({exc.strerror})"],
            where=str(settings.source_file),
        ) from None
    return sock
