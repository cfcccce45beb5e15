"""bot.metrics: the facade over prometheus_client that the bot's modules call, one registry per
server, and a /metrics text that Prometheus' own parser reads."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Registry


def parsed(registry: Registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(registry.render())
        for s in family.samples
    }


def test_counters_gauges_and_histograms_by_keyword_labels() -> None:
    reg = Registry()
    commands = reg.counter("chatops_commands_total", "Commands", ("platform", "outcome"))
    commands.inc(platform="slack", outcome="changed")
    commands.inc(2, platform="slack", outcome="changed")
    busy = reg.gauge("chatops_commands_in_flight", "Running now")
    busy.inc()
    busy.inc()
    busy.dec()
    pending = reg.gauge("chatops_alert_outbox_pending", "Pending")
    pending.set(7)
    latency = reg.histogram("chatops_ack_seconds", "Ack", ("platform",), buckets=(0.1, 1.0))
    latency.observe(0.05, platform="slack")
    latency.observe(0.5, platform="slack")
    with latency.time(platform="discord"):
        pass

    assert commands.value(platform="slack", outcome="changed") == 3
    assert commands.value(platform="discord", outcome="changed") == 0  # never touched
    assert (busy.value(), pending.value()) == (1, 7)
    assert (latency.count(platform="slack"), latency.count(platform="discord")) == (2, 1)
    samples = parsed(reg)
    assert samples[("chatops_commands_total", (("outcome", "changed"), ("platform", "slack")))] == 3
    assert samples[("chatops_ack_seconds_bucket", (("le", "0.1"), ("platform", "slack")))] == 1
    assert samples[("chatops_ack_seconds_bucket", (("le", "+Inf"), ("platform", "slack")))] == 2
    assert samples[("chatops_ack_seconds_sum", (("platform", "slack"),))] == pytest.approx(0.55)
    assert not [name for name, _ in samples if name.endswith("_created")]


def test_asking_twice_shares_the_series_and_registries_are_independent() -> None:
    one, two = Registry(), Registry()
    first = one.counter("chatops_webhooks_total", "Webhooks", ("result",))
    assert one.counter("chatops_webhooks_total", "Webhooks", ("result",)) is first
    other = two.counter("chatops_webhooks_total", "Webhooks", ("result",))  # no global registry
    first.inc(result="accepted")
    assert (first.value(result="accepted"), other.value(result="accepted")) == (1, 0)
    assert "chatops_webhooks_total" not in Registry().render()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.gauge("chatops_x_total", "x", ("a",)), "already registered as counter"),
        (lambda r: r.counter("chatops_x_total", "x", ("b",)), "already registered as counter"),
        (lambda r: r.counter("bad name", "x"), "invalid metric name"),
        (lambda r: r.histogram("chatops_h", "x", ("le",)), "invalid label name"),
        (lambda r: r.histogram("chatops_h", "x", buckets=()), "buckets must be distinct"),
        (lambda r: r.counter("chatops_x_total", "x", ("a",)).inc(-1, a="1"), "only goes up"),
        (lambda r: r.counter("chatops_x_total", "x", ("a",)).inc(b="1"), "takes labels ['a']"),
    ],
)
def test_mistakes_are_value_errors(call, message) -> None:
    reg = Registry()
    reg.counter("chatops_x_total", "x", ("a",))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(reg)
