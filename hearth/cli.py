"""`hearth` / `python -m hearth`: serve (default, ComfyUI's main.py flags) or run one workflow file."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Sequence

from hearth.config import Config, FlagError, config_from_args

log = logging.getLogger("hearth")


def setup_logging(cfg: Config):
    root = logging.getLogger()
    root.setLevel(getattr(logging, cfg.verbose, logging.INFO))
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.handlers[:] = [handler]
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from hearth.runner import run_main

        return run_main(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    try:
        cfg = config_from_args(argv)
    except FlagError as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        print("Run 'hearth --help' for the accepted flags.", file=sys.stderr)
        return 2
    setup_logging(cfg)
    try:
        return asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0


async def serve(cfg: Config) -> int:
    from aiohttp import web

    from hearth.app import App
    from hearth.server.http import create_web_app

    for warning in cfg.warnings:
        log.warning(warning)
    try:
        app = App(cfg)
    except (ValueError, OSError) as exc:
        log.error("hearth: cannot start: %s", exc)
        return 1
    logging.getLogger().addHandler(app.logs)
    await app.start()
    web_app = create_web_app(app)
    runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
    await runner.setup()
    sites = []
    try:
        for host in cfg.listen:
            site = web.TCPSite(runner, host if host not in ("0.0.0.0", "::") else host, cfg.port,
                               reuse_address=True)
            await site.start()
            sites.append(site)
    except OSError as exc:
        log.error("hearth: cannot listen on %s:%s: %s", cfg.listen, cfg.port, exc)
        await app.stop()
        await runner.cleanup()
        return 1
    if app.api_token and not cfg.api_token:
        log.warning("API token (required off loopback): %s", app.api_token)
    if not cfg.dont_print_server:
        host = cfg.listen[0]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if ":" in shown:
            shown = f"[{shown}]"
        log.info("Starting server\n")
        log.info("To see the GUI go to: http://%s:%d", shown, cfg.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()
    log.info("shutting down")
    await app.stop()
    await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
