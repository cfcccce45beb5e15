"""The running process: aiohttp app (health, readiness, metrics), start-up and shutdown, wiring of settings into clients. The only place bot.chat and bot.alerts meet."""
