import os

import pytest

from commands import errors, validation


@pytest.mark.parametrize("name", ["payments", "a", "my-app.v2", "a" * 253])
def test_valid_app_names(name):
    assert validation.app_name(name) == name


@pytest.mark.parametrize("name", ["", "Payments", "-x", "x-", "a_b", "a" * 254, "a b", "../etc"])
def test_invalid_app_names(name):
    with pytest.raises(errors.BadInput) as ei:
        validation.app_name(name)
    assert "not a valid application name" in ei.value.user_message


@pytest.mark.parametrize(
    "text,seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2d", 172800)]
)
def test_durations(text, seconds):
    assert validation.duration(text, minimum=1, maximum=10**6) == seconds


def test_duration_out_of_range_names_the_range():
    with pytest.raises(errors.BadInput) as ei:
        validation.duration("8d", minimum=60, maximum=7 * 86400, what="self-heal pause")
    assert "out of range" in ei.value.user_message
    assert ei.value.hint == "The accepted range is 1m to 7d."


@pytest.mark.parametrize("text", ["soon", "10x", "", "m"])
def test_duration_garbage(text):
    with pytest.raises(errors.BadInput, match="is not a duration"):
        validation.duration(text, minimum=1, maximum=100)


def test_namespace():
    assert validation.namespace("prod") == "prod"
    with pytest.raises(errors.BadInput):
        validation.namespace("prod.eu")


# -- bounded parsing: the text is checked before int()/float() ever see it ----------------------

HUGE = ["9" * 400, "9" * 4301, "9" * 4301 + "m", "1" + "0" * 400 + "s", "9" * 25]


@pytest.mark.parametrize("text", HUGE)
def test_huge_durations_are_a_usage_error_not_a_crash(text):
    # before: 400 digits -> OverflowError (float inf formatted), 4,301 digits -> ValueError
    with pytest.raises(errors.BadInput) as ei:
        validation.duration(text, minimum=60, maximum=7 * 86400, what="self-heal pause")
    assert ei.value.user_message.endswith("self-heal pause.")
    assert len(ei.value.user_message) < 120  # the input is clipped, not echoed whole


@pytest.mark.parametrize("text", ["inf", "nan", "1e999", "-5", "5.", ".5", "１０m", "٣٠"])
def test_non_finite_signed_or_non_ascii_durations_are_refused(text):
    with pytest.raises(errors.BadInput):
        validation.duration(text, minimum=1, maximum=10**6)


def test_a_long_but_in_limit_number_is_out_of_range_with_its_value():
    with pytest.raises(errors.BadInput) as ei:
        validation.duration("9" * 24, minimum=60, maximum=7 * 86400, what="self-heal pause")
    assert "out of range" in ei.value.user_message
    assert ei.value.hint == "The accepted range is 1m to 7d."


def test_within_refuses_infinity_and_nan_without_formatting_them():
    for value in (float("inf"), float("nan"), float("-inf")):
        with pytest.raises(errors.BadInput, match="out of range"):
            validation.within(value, minimum=10, maximum=3600, what="sync timeout")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("9" * 4301, "is too long for a limit."),
        ("1e3", "is not a valid limit."),
        ("٣", "is not a valid limit."),
        ("0", "A limit of 0 is out of range."),
        ("10001", "A limit of 10001 is out of range."),
    ],
)
def test_integers_are_bounded(text, says):
    with pytest.raises(errors.BadInput) as ei:
        validation.integer(text, minimum=1, maximum=10000, what="limit")
    assert says in ei.value.user_message
    assert validation.integer(" 42 ", minimum=1, maximum=10000) == 42


@pytest.mark.parametrize("text", ["#" + "9" * 5000, "9" * 4301, "x" * 301 + ":degraded", "nokey"])
def test_incident_refs_are_bounded(text):
    with pytest.raises(errors.BadInput):
        validation.incident_ref(text)
    assert validation.incident_ref("#12") == "#12"
    assert validation.incident_ref("payments:degraded") == "payments:degraded"


# -- the CLI: every bounded option is a usage error (exit 2), never a traceback ------------------


def _cli(argv, capsys):
    from bot.cli.main import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["selfheal", "off", "payments", "--for", "9" * 400], "too long for a self-heal pause"),
        (["selfheal", "off", "payments", "--for", "9" * 4301], "too long for a self-heal pause"),
        (["sync", "payments", "--timeout", "9" * 400], "must be a"),
        (["sync", "payments", "--timeout", "1e999"], "must be a"),
        (["sync", "payments", "--timeout", "nan"], "must be a"),
        (["sync", "payments", "--retry-limit", "9" * 4301], "must be a"),
        (["sync", "payments", "--retry-limit", "11"], "must be a"),
        (["hook", "presync", "--app", "payments", "--timeout", "inf"], "must be a"),
        (["audit", "--limit", "9" * 40], "must be a"),
        (["audit", "--limit", "9" * 4301], "must be a"),
        (["audit", "--since", "9" * 400], "is neither a time span nor a date"),
        (["audit", "--since", "9" * 4301 + "d"], "is neither a time span nor a date"),
    ],
)
def test_cli_huge_numbers_exit_2_without_a_traceback(argv, says, tmp_path, monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith("CHATOPS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CHATOPS_STATE_DB", str(tmp_path / "s.db"))
    code, text = _cli(argv, capsys)
    assert code == 2, text
    assert says in text
    assert "Traceback" not in text and "Internal error" not in text
    assert len(text) < 2000  # the 4,301 digits are not echoed back
