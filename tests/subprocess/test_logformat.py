"""Log lines as text or JSON: the formatter, and `mailprobe run` logging probes as JSON."""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from pathlib import Path

import pytest

from mailprobe.agent.config import ConfigError
from mailprobe.agent.demo.service import EmbeddedMailService
from mailprobe.agent.logformat import JsonFormatter, logfmt_fields
from tests.helpers.agents import AgentProcess, free_port
from tests.helpers.configs import config_data, write_config
from tests.helpers.waits import wait_until

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def record(msg: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("mailprobe.agent.runtime", level, __file__, 1, msg, args, None)


def test_logfmt_fields_of_a_probe_line_in_order() -> None:
    """key=value pairs become fields; the leading word and non-pairs are left out."""
    line = "probe route=a2b id=0123456789ab status=ok delay=0.412s smtp_connect=0.011s"
    assert logfmt_fields(line) == {
        "route": "a2b", "id": "0123456789ab", "status": "ok", "delay": "0.412s",
        "smtp_connect": "0.011s",
    }  # fmt: skip


def test_logfmt_quoted_values_are_unquoted_and_only_whole_words_are_keys() -> None:
    """key="two words" keeps its spaces and escapes; x=y inside a value is not a key."""
    line = 'route a2b down reason="connection refused \\"now\\"" url=http://h/?a=b'
    assert logfmt_fields(line) == {"reason": 'connection refused "now"', "url": "http://h/?a=b"}


def test_json_line_has_time_level_logger_message_and_the_logfmt_fields() -> None:
    """One JSON object: RFC 3339 UTC time to the millisecond, lower-case level, logger name,
    the formatted message, and each logfmt pair of the message as its own key."""
    rec = record("probe route=%s id=%s status=%s delay=%.3fs", "a2b", "abc", "ok", 0.4123)
    rec.created = 1_800_000_000.1234
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2027-01-15T08:00:00.123Z",
        "level": "info",
        "logger": "mailprobe.agent.runtime",
        "message": "probe route=a2b id=abc status=ok delay=0.412s",
        "route": "a2b", "id": "abc", "status": "ok", "delay": "0.412s",
    }  # fmt: skip


def test_json_fields_never_overwrite_the_objects_own_keys() -> None:
    """A message saying level=debug or message=x keeps the record's level and message."""
    obj = json.loads(JsonFormatter().format(record("odd level=debug message=x logger=y", level=40)))
    assert (obj["level"], obj["logger"]) == ("error", "mailprobe.agent.runtime")
    assert obj["message"] == "odd level=debug message=x logger=y"


def _fail() -> None:
    raise RuntimeError("boom")


def test_json_line_carries_the_traceback_of_an_exception() -> None:
    """log.exception(...) puts the traceback in `exception`, still one line."""
    try:
        _fail()
    except RuntimeError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exception"]


def test_log_format_is_text_or_json(tmp_path: Path) -> None:
    """agent.log_format accepts text and json and names the key on anything else."""
    from mailprobe.agent.config import parse_config

    data = {"agent": {"secret_env": "X", "log_format": "yaml"},
            "accounts": {}, "routes": [{"name": "r", "from": "a", "to": "a"}]}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        parse_config(data, check_secrets=False)
    assert any(p.startswith("agent.log_format: ") for p in err.value.problems)


# ----------------------------------------------------------------------------- the daemon



async def run_until_probed(mail: EmbeddedMailService, tmp_path: Path, log_format: str | None,
                           *args: str) -> list[str]:  # fmt: skip
    """Run the agent until it logged a delivered probe; its log lines."""
    data = config_data(mail, tmp_path / "state", interval="1s")
    data["agent"]["listen"] = f"127.0.0.1:{free_port()}"
    if log_format:
        data["agent"]["log_format"] = log_format
    write_config(data, tmp_path / "c.yaml")
    log = tmp_path / "agent.log"
    agent = AgentProcess(tmp_path / "c.yaml", log, *args)
    try:
        await agent.start()
        await wait_until(lambda: "status=ok" in log.read_text(), 30, "a delivered probe logged")
        assert await agent.signal(signal.SIGTERM) == 0
    finally:
        await agent.ensure_gone()
    return log.read_text().splitlines()


async def test_run_with_agent_log_format_json_logs_one_object_a_line(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """agent.log_format: json: every line the agent writes parses as JSON; the probe line has
    route and status as keys."""
    lines = await run_until_probed(mail, tmp_path, "json")
    objects = [json.loads(line) for line in lines]
    assert all(RFC3339_MS.fullmatch(o["time"]) for o in objects)
    probes = [o for o in objects if o["message"].startswith("probe ")]
    assert probes
    assert {o["route"] for o in probes} == {"a2b"}
    assert "ok" in {o["status"] for o in probes}  # sent (debug), then ok
    assert any(o["message"] == "stopped" for o in objects)


async def test_run_log_format_flag_wins_over_the_config(
    mail: EmbeddedMailService, tmp_path: Path
) -> None:
    """--log-format text with agent.log_format: json: plain text lines."""
    lines = await run_until_probed(mail, tmp_path, "json", "--log-format", "text")
    assert lines
    assert not any(line.startswith("{") for line in lines)
    assert any(" INFO mailprobe.agent.runtime probe route=a2b " in line for line in lines)
