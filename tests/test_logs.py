"""CHATOPS_LOG_FORMAT: text or one JSON object per line, secrets never in either; and the
start-up log names the address really bound (port 0, a hostname)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from bot import logs
from bot.settings import Settings
from tests.fakes.recording import until

BIN = str(Path(sys.executable).parent / "chatops")
SECRET = "webhook-secret-value-1234"


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"boom with {SECRET}")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("chatops.test", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_json_lines_have_the_documented_keys_and_no_secret():
    fmt = logs.JsonFormatter(logs.secret_values(Settings(webhook_token=SECRET)))
    line = fmt.format(_record("token is %s", SECRET, exc=True))
    assert "\n" not in line
    out = json.loads(line)
    assert set(out) == {"time", "level", "logger", "message", "exc"}
    assert out["level"] == "ERROR" and out["logger"] == "chatops.test"
    assert out["message"] == "token is ***"
    assert "ValueError: boom with ***" in out["exc"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", out["time"])
    assert SECRET not in line
    plain = json.loads(fmt.format(_record("plain")))
    assert "exc" not in plain


def test_text_format_redacts_too():
    settings = Settings(webhook_token=SECRET, slack_bot_token="xoxb-0123456789")
    fmt = logs.formatter(settings)
    assert isinstance(fmt, logs.TextFormatter)
    line = fmt.format(_record("a %s and %s", SECRET, "xoxb-0123456789", exc=True))
    assert SECRET not in line and "xoxb-0123456789" not in line
    assert "a *** and ***" in line


def test_setup_replaces_its_own_handler_only():
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    stream = io.StringIO()
    try:
        settings = Settings(log_format="json", webhook_token=SECRET)
        logs.setup(settings, stream=stream)
        logs.setup(settings, stream=stream)  # again (the CLI, then serve): one handler
        ours = [h for h in root.handlers if h.get_name() == logs.HANDLER_NAME]
        assert len(ours) == 1 and [h for h in root.handlers if h not in ours] == before
        logging.getLogger("chatops.x").info("hello %s", SECRET)
        [line] = stream.getvalue().splitlines()
        assert json.loads(line)["message"] == "hello ***"
    finally:
        for h in [h for h in root.handlers if h.get_name() == logs.HANDLER_NAME]:
            root.removeHandler(h)
        root.setLevel(level)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:0"])
def test_serve_logs_json_and_the_real_bound_address(tmp_path, listen):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPS_")}
    env |= {
        "CHATOPS_LOG_FORMAT": "json",
        "CHATOPS_LISTEN": listen,
        "CHATOPS_STATE_DB": str(tmp_path / "s.db"),
        "CHATOPS_WEBHOOK_TOKEN": SECRET,
    }
    proc = subprocess.Popen(
        [BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:

        def listening() -> str | None:
            assert proc.poll() is None, "".join(lines)
            return next((ln for ln in list(lines) if "listening on" in ln), None)

        line = until(listening, timeout=20, interval=0.05)
        record = json.loads(line)
        assert record["logger"] == "chatops.serve" and record["level"] == "INFO"
        addresses = re.findall(r"(\[[0-9a-f:]+\]|[\d.]+):(\d+)", record["message"])
        assert addresses and all(port != "0" for _host, port in addresses)
        host, port = addresses[0]
        assert httpx.get(f"http://{host}:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        reader.join(5)
    assert proc.returncode == 0
    assert lines and all(json.loads(ln)["message"] for ln in lines)  # every line is JSON
    assert not any(SECRET in ln for ln in lines)
