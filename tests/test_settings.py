import pytest

from bot import settings as s
from bot.config import models


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("CHATOPS_"):
            monkeypatch.delenv(k)


def test_defaults_need_nothing():
    cfg = s.load()
    assert cfg.state_db == "./chatops.db"
    assert cfg.listen_port == 8080
    assert cfg.git_api_base == "https://api.github.com"


def test_every_problem_listed_at_once(monkeypatch):
    monkeypatch.setenv("CHATOPS_LISTEN", "nonsense")
    monkeypatch.setenv("CHATOPS_ARGOCD_URL", "argocd.local")
    monkeypatch.setenv("CHATOPS_SYNC_TIMEOUT", "1")
    monkeypatch.setenv("CHATOPS_ARGOCD_TOKNE", "typo")
    with pytest.raises(s.ConfigError) as ei:
        s.load()
    text = ei.value.render()
    assert "CHATOPS_LISTEN" in text and "host:port" in text
    assert "CHATOPS_ARGOCD_URL" in text and "http" in text
    assert "CHATOPS_SYNC_TIMEOUT" in text
    assert "CHATOPS_ARGOCD_TOKNE is not a known setting" in text
    assert len(ei.value.problems) == 4


def test_env_overrides_yaml_and_secrets_hidden(tmp_path, monkeypatch):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "argocd_url: https://yaml.example\nargocd_token: from-yaml-secret\n"
        "authorization:\n  grants:\n    - role: operator\n      slack_users: [U1]\n"
        "      apps: ['pay*']\n"
    )
    monkeypatch.setenv("CHATOPS_ARGOCD_URL", "https://env.example")
    cfg = s.load(str(cfg_file))
    assert cfg.argocd_url == "https://env.example"
    assert cfg.argocd_token is not None
    assert cfg.argocd_token.get_secret_value() == "from-yaml-secret"
    assert "from-yaml-secret" not in repr(cfg)
    grant = cfg.authorization.grants[0]
    assert grant.covers("payments", "default") and not grant.covers("billing", "default")


def test_bad_yaml_is_one_clear_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("- just\n- a list\n")
    with pytest.raises(s.ConfigError, match="must be a mapping"):
        s.load(str(f))
    with pytest.raises(s.ConfigError, match="does not exist"):
        s.load(str(tmp_path / "missing.yaml"))


def test_require_names_missing_settings():
    cfg = s.load()
    with pytest.raises(s.ConfigError) as ei:
        cfg.require("argocd_url", "argocd_token", why="sync")
    assert "CHATOPS_ARGOCD_URL" in str(ei.value) and "CHATOPS_ARGOCD_TOKEN" in str(ei.value)


def test_route_matching():
    r = models.Route(projects=["pay*"], slack_channel="C1")
    assert r.matches("x", "payments", "prod")
    assert not r.matches("x", "billing", "prod")


@pytest.mark.parametrize("prefix", ["Argo-", "argo ", "a-very-long-prefix-for-commands-"])
def test_a_prefix_that_breaks_command_names_is_refused_at_load(monkeypatch, prefix):
    # Discord refuses the whole command list for one bad name (^[-_\p{L}\p{N}]{1,32}$, lowercase)
    monkeypatch.setenv("CHATOPS_COMMAND_PREFIX", prefix)
    with pytest.raises(s.ConfigError) as ei:
        s.load()
    text = ei.value.render()
    assert repr(prefix + "sync") in text
    assert "not valid chat command names: use 1-32 lowercase letters, digits, '-' or '_'" in text


def test_a_good_prefix_and_unicode_names_load(monkeypatch):
    monkeypatch.setenv("CHATOPS_COMMAND_PREFIX", "argo_")
    monkeypatch.setenv("CHATOPS_COMMAND_NAMES__STATUS", "état")
    cfg = s.load()
    assert cfg.command_name("status") == "argo_état"
    assert cfg.command_name("verify-rootless") == "argo_verify-rootless"


def test_log_format_is_text_or_json(monkeypatch):
    assert s.load().log_format == "text"
    monkeypatch.setenv("CHATOPS_LOG_FORMAT", "json")
    assert s.load().log_format == "json"
    monkeypatch.setenv("CHATOPS_LOG_FORMAT", "xml")
    with pytest.raises(s.ConfigError) as ei:
        s.load()
    assert [p for p in ei.value.problems if p.startswith("CHATOPS_LOG_FORMAT")]


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:8080", "[::1]:9000"])
def test_listen_accepts_port_0_and_hostnames(monkeypatch, listen):
    monkeypatch.setenv("CHATOPS_LISTEN", listen)
    cfg = s.load()
    assert cfg.listen == listen
    assert f"{cfg.listen_host}:{cfg.listen_port}" == listen.replace("[", "").replace("]", "")


@pytest.mark.parametrize("listen", ["0.0.0.0:65536", "0.0.0.0:" + "9" * 400, "0.0.0.0:-1", "x"])
def test_listen_refuses_bad_ports(monkeypatch, listen):
    monkeypatch.setenv("CHATOPS_LISTEN", listen)
    with pytest.raises(s.ConfigError) as ei:
        s.load()
    assert "CHATOPS_LISTEN" in ei.value.render()
