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
