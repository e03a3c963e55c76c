"""`wasmlab serve`: the TUI in a browser through textual-serve, on 127.0.0.1 by default, behind a token that the
page and its websocket must carry (whoever reaches the page can run containers as the lab's user)."""

from __future__ import annotations

import hmac
import secrets
import shlex
import sys
from typing import Any

from aiohttp import web
from textual_serve.server import Server

COOKIE = "wasmlab_token"
LOCAL = ("127.0.0.1", "localhost", "::1")


class TokenServer(Server):
    """textual-serve's Server, with its two public handlers checking the token: the page takes it from
    ?token= (and leaves it in a same-site cookie), the websocket from that cookie."""

    def __init__(self, command: str, *, host: str, port: int, token: str, public_url: str | None = None) -> None:
        super().__init__(command, host=host, port=port, title="wasmlab", public_url=public_url)
        self.token = token

    def allowed(self, request: web.Request) -> bool:
        if not self.token:
            return True
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def handle_index(self, request: web.Request) -> Any:
        if not self.allowed(request):
            return web.Response(status=403, text="wasmlab serve: open the address printed at start, with its "
                                                  "?token=...\n")
        response = await super().handle_index(request)
        if self.token:
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    async def handle_websocket(self, request: web.Request) -> Any:
        if not self.allowed(request):
            return web.Response(status=403, text="wasmlab serve: no token\n")
        return await super().handle_websocket(request)


def serve(host: str = "127.0.0.1", port: int = 8000, *, token: bool = True, public_url: str | None = None) -> int:
    """Serve the TUI until Ctrl+C; prints the address (with its token) and the warnings first."""
    secret = secrets.token_urlsafe(16) if token else ""
    command = shlex.join([sys.executable, "-m", "wasmlab.lab.tui.app"])
    server = TokenServer(command, host=host, port=port, token=secret, public_url=public_url)
    if host not in LOCAL:
        print(f"warning: listening on {host}: anyone who can reach port {port}"
              f"{' and has the token' if secret else ''} can run containers as this lab's user", file=sys.stderr)
    if not secret:
        print(f"warning: no token: anyone who can reach port {port} can run containers as this lab's user",
              file=sys.stderr)
    print(f"wasmlab serve: open {server.public_url}/{'?token=' + secret if secret else ''}", flush=True)
    server.serve()
    return 0
