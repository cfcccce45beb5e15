"""Settings, read once: ``CHATOPS_*`` environment variables over an optional YAML file.

A wrong or missing setting stops the program with ONE message that lists every problem and how
to fix it (``ConfigError``), never a traceback. Secrets are ``SecretStr``: they never appear in a
repr, a log line or an error message.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bot.config import reading
from bot.config.git_credentials import git_credential_problems
from bot.config.models import (
    ArgoInstance,
    Authorization,
    AutoRollback,
    Cluster,
    CommandNames,
    Route,
)
from bot.config.reading import ConfigError
from commands.argocd import links

if TYPE_CHECKING:
    from commands.autorollback import PolicyConfig

__all__ = ["ConfigError", "Settings", "load"]

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS-1123 label
_COMMAND_NAME = re.compile(r"[-\w]{1,32}")  # \w: Unicode letters and digits, and "_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHATOPS_",
        extra="forbid",
        env_nested_delimiter="__",
        validate_default=True,
        hide_input_in_errors=True,  # a ValidationError must not echo a raw token or key
    )

    # Argo CD
    argocd_url: str | None = None
    argocd_token: SecretStr | None = None
    argocd_ca_bundle: str | None = None
    argocd_insecure: bool = False
    argocd_ui_url: str | None = None  # links in chat; defaults to argocd_url
    argocd_namespace: str = "argocd"  # Argo CD's own namespace (apps in any namespace)
    # several Argo CD instances (YAML); CHATOPS_ARGOCD_URL/TOKEN, if set, is one named default
    instances: list[ArgoInstance] = []
    # Argo CD destination -> kubeconfig context (YAML); empty: every app on the one kubeconfig
    clusters: list[Cluster] = []
    strict_clusters: bool = False  # an unmapped destination fails instead of skipping
    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_alert_channel: str | None = None
    # Discord
    discord_token: SecretStr | None = None
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    discord_alert_channel: str | None = None
    discord_guild_id: str | None = None
    # Git host
    git_provider: Literal["github", "gitlab"] = "github"
    git_api_url: str | None = None
    git_token: SecretStr | None = None
    git_repo: str | None = None
    git_branch: str = "main"
    # ... or, instead of git_token, a GitHub App installation (commands/githost/github/app_auth.py)
    git_app_id: str | None = None
    git_app_installation_id: str | None = None
    git_app_private_key: SecretStr | None = None  # PEM text
    git_app_private_key_file: str | None = None  # path to the .pem
    # server, state
    webhook_token: SecretStr | None = None
    state_db: str = "./chatops.db"
    listen: str = "0.0.0.0:8080"
    # HTTP server limits (bot/http_limits.py): slow or too many clients are cut off
    http_header_timeout: float = Field(10.0, gt=0, le=300)
    http_body_timeout: float = Field(10.0, gt=0, le=300)
    http_keepalive_timeout: float = Field(75.0, gt=0, le=3600)
    http_max_connections: int = Field(1000, ge=1, le=100_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (bot/logs.py)
    # behaviour
    sync_timeout: float = Field(300.0, ge=10, le=3600)
    presync_timeout: float = Field(120.0, ge=5, le=1800)
    postsync_timeout: float = Field(300.0, ge=10, le=3600)
    retry_limit: int = Field(3, ge=0, le=10)
    degraded_grace: float = Field(60.0, ge=0, le=3600)
    reannounce_interval: float = Field(1800.0, ge=60, le=86400)
    # how long alert delivery keeps trying a chat channel that fails (seconds or 90m, 24h, 2d)
    delivery_horizon: float = Field(86400.0, ge=60, le=30 * 86400)
    kube_exec: bool = True
    # Kubernetes namespaces whose Warning events the bot watches (the ones its RBAC grants);
    # empty: all namespaces. Env: comma-separated (CHATOPS_WATCH_NAMESPACES=ai-services,web).
    watch_namespaces: list[str] | str = []
    # high availability: a postgresql:// state_db turns on leader election on a Lease
    state_db_password: SecretStr | None = None
    lease_name: str = "argocd-chatops"
    lease_namespace: str | None = None  # default: the pod's own namespace
    instance_id: str | None = None  # default: the hostname (the pod name)
    lease_duration: float = Field(15.0, ge=2, le=300)
    lease_renew_deadline: float = Field(10.0, ge=1, le=299)
    lease_retry_period: float = Field(2.0, ge=0.1, le=60)
    # YAML-only structures (also settable as JSON in env)
    authorization: Authorization = Authorization()
    routes: list[Route] = []
    auto_rollback: AutoRollback = AutoRollback()
    command_names: CommandNames = CommandNames()
    command_prefix: str = ""  # e.g. "argo-" makes /argo-sync

    @field_validator("delivery_horizon", mode="before")
    @classmethod
    def _horizon(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        text = v.strip().lower()
        if (
            not text
            or len(text) > 16
            or not re.fullmatch(r"(\d+(\.\d+)?|(\d+d)?(\d+h)?(\d+m)?(\d+s)?)", text)
        ):
            raise ValueError("write seconds or a duration like 90m, 24h or 2d")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([dhms])", text)))

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or len(port) > 5 or not 0 <= int(port) < 65536:
            raise ValueError("must be host:port, e.g. 0.0.0.0:8080 (port 0: any free port)")
        return v

    @field_validator("argocd_url", "git_api_url", "discord_api_url", "slack_api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("watch_namespaces")
    @classmethod
    def _namespaces(cls, v: list[str] | str) -> list[str]:
        names = v.split(",") if isinstance(v, str) else v
        out: list[str] = []
        for raw in names:
            name = str(raw).strip()
            if not name or name in out:
                continue
            if not _NAMESPACE.match(name):
                raise ValueError(
                    f"{name!r} is not a Kubernetes namespace name (lowercase letters, digits "
                    "and '-', at most 63 characters)"
                )
            out.append(name)
        return out

    @field_validator("git_repo")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and "/" not in v.strip("/"):
            raise ValueError("must be owner/name (GitHub) or group/project (GitLab)")
        return v

    @field_validator("git_app_installation_id")
    @classmethod
    def _installation(cls, v: str | None) -> str | None:
        if v is not None and not v.strip().isdigit():
            raise ValueError("must be the installation's number (the end of its settings URL)")
        return v.strip() if v is not None else None

    @model_validator(mode="after")
    def _command_names_valid(self) -> Settings:
        """Each command's full name (prefix + name) must be one Discord accepts, or it refuses
        the whole command list at start-up: 1-32 lowercase letters, digits, '-' or '_'
        (``^[-_\\p{L}\\p{N}]{1,32}$``); Slack's slash commands have the same limits."""
        bad = []
        for field in CommandNames.model_fields:
            name = self.command_prefix + str(getattr(self.command_names, field))
            if not _COMMAND_NAME.fullmatch(name) or name != name.lower():
                bad.append(repr(name))
        if bad:
            raise ValueError(
                f"command names {', '.join(bad)} (CHATOPS_COMMAND_PREFIX + command_names) are "
                "not valid chat command names: use 1-32 lowercase letters, digits, '-' or '_'"
            )
        return self

    @model_validator(mode="after")
    def _git_credentials(self) -> Settings:
        """A Git repository needs a token or a complete GitHub App, not both, not half."""
        problems = git_credential_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _instances_unique(self) -> Settings:
        names = [i.name for i in self.argo_instances]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(
                f"Argo CD instance name(s) {', '.join(dup)} are used twice (CHATOPS_ARGOCD_URL "
                "is the instance named default)"
            )
        known = set(names)
        bad = sorted({c.instance for c in self.clusters if c.instance and c.instance not in known})
        if bad and known:
            raise ValueError(
                f"clusters name unknown Argo CD instance(s) {', '.join(bad)}; "
                f"configured: {', '.join(names)}"
            )
        return self

    @model_validator(mode="after")
    def _lease_timings(self) -> Settings:
        if not self.lease_retry_period < self.lease_renew_deadline < self.lease_duration:
            raise ValueError(
                "lease timings need CHATOPS_LEASE_RETRY_PERIOD < CHATOPS_LEASE_RENEW_DEADLINE"
                " < CHATOPS_LEASE_DURATION (client-go's defaults: 2 < 10 < 15)"
            )
        return self

    @field_validator("state_db")
    @classmethod
    def _state_db(cls, v: str) -> str:
        if v.startswith(("postgresql://", "postgres://")):
            from urllib.parse import urlsplit

            parts = urlsplit(v)
            if not parts.hostname or not parts.path.strip("/"):
                raise ValueError("must be postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        elif "://" in v and not v.startswith("sqlite://"):
            raise ValueError("must be a file path, sqlite:///PATH or postgresql://…")
        return v

    @property
    def shared_state(self) -> bool:
        """PostgreSQL: several replicas share state, and leader election is on."""
        return self.state_db.startswith(("postgresql://", "postgres://"))

    @property
    def uses_git_app(self) -> bool:
        return bool(self.git_app_id or self.git_app_installation_id or self.git_app_key_given)

    @property
    def git_app_key_given(self) -> bool:
        return bool(self.git_app_private_key) or bool(self.git_app_private_key_file)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # explicit arguments > environment > YAML file (passed in as init kwargs by load())
        return (env_settings, init_settings)

    # -- derived ---------------------------------------------------------------------------
    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"  # [::1]:8080 -> ::1

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def namespaces_watched(self) -> tuple[str, ...]:
        """``watch_namespaces`` as a tuple; empty: every namespace."""
        v = self.watch_namespaces
        return tuple(v) if isinstance(v, list) else tuple(self._namespaces(v))

    @property
    def ui_url(self) -> str:
        return links.ui_base(self.argocd_ui_url, self.argocd_url)

    @property
    def argo_instances(self) -> list[ArgoInstance]:
        """Every Argo CD instance: CHATOPS_ARGOCD_URL/TOKEN as ``default``, then the list."""
        out = []
        if self.argocd_url and self.argocd_token:
            out.append(
                ArgoInstance(
                    name="default",
                    url=self.argocd_url,
                    token=self.argocd_token,
                    ca_bundle=self.argocd_ca_bundle,
                    insecure=self.argocd_insecure,
                    ui_url=self.argocd_ui_url,
                    namespace=self.argocd_namespace,
                )
            )
        return out + list(self.instances)

    @property
    def default_instance(self) -> str:
        """What the bare webhook path and an unqualified CLI command mean: the instance named
        ``default``, else the first listed."""
        names = [i.name for i in self.argo_instances]
        return "default" if "default" in names or not names else names[0]

    @property
    def git_api_base(self) -> str:
        if self.git_api_url:
            return self.git_api_url.rstrip("/")
        return "https://api.github.com" if self.git_provider == "github" else "https://gitlab.com"

    def auto_rollback_policy(self) -> PolicyConfig:
        """``auto_rollback`` as the policy reads it (its grace defaults to ``degraded_grace``)."""
        from commands.autorollback import PolicyConfig

        ar = self.auto_rollback
        return PolicyConfig(
            apps=tuple(ar.apps),
            projects=tuple(ar.projects),
            mode=ar.mode,
            dry_run=ar.dry_run,
            per_app_per_hour=ar.per_app_per_hour,
            global_per_hour=ar.global_per_hour,
            degraded_grace=self.degraded_grace if ar.degraded_grace is None else ar.degraded_grace,
        )

    def command_name(self, command: str) -> str:
        return self.command_prefix + str(getattr(self.command_names, command.replace("-", "_")))

    def require(self, *names: str, why: str) -> None:
        """Refuse to go on when settings ``why`` needs are missing, naming all of them."""
        missing = [n for n in names if getattr(self, n) in (None, "")]
        if missing:
            raise ConfigError(
                [f"CHATOPS_{n.upper()} is not set ({why} needs it)." for n in missing]
            )


def load(config_file: str | None = None) -> Settings:
    """Read the YAML file (``--config`` or ``CHATOPS_CONFIG``) and the environment."""
    path = config_file or os.environ.get("CHATOPS_CONFIG")
    data = reading.read_file(path) if path else {}
    problems = reading.unknown_env(os.environ, data, Settings.model_fields)
    try:
        settings = Settings(**data)
    except ValidationError as e:
        problems += reading.validation_problems(e, Settings.model_fields)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return settings
