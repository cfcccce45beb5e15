"""The settings' YAML-only structures: authorization grants, alert routes, Argo CD instances,
destination clusters, the auto-rollback policy block and the command names.

They are plain pydantic models, validated where ``Settings`` (``bot/settings.py``) nests them;
everything here can also be given as JSON in a ``CHATOPS_*`` environment variable.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from bot.config.reading import ConfigError

Role = Literal["viewer", "operator", "admin"]
ROLE_ORDER: dict[str, int] = {"none": 0, "viewer": 1, "operator": 2, "admin": 3}


class Grant(BaseModel):
    """Who gets which role, optionally only for some projects or app-name patterns."""

    role: Role
    slack_users: list[str] = []
    slack_groups: list[str] = []
    discord_users: list[str] = []
    discord_roles: list[str] = []
    projects: list[str] = []  # empty: every project
    apps: list[str] = []  # fnmatch patterns; empty: every app
    # a pattern matches the app's name alone or as shown (``team-a/web@homelab``)

    def covers(self, app: str | None, project: str | None) -> bool:
        if self.apps and (app is None or not any(_app_matches(app, p) for p in self.apps)):
            return False
        if self.projects and (project is None or project not in self.projects):
            return False
        return True


def _app_matches(app: str, pattern: str) -> bool:
    bare = app.partition("@")[0].rpartition("/")[2]
    return fnmatch.fnmatch(app, pattern) or fnmatch.fnmatch(bare, pattern)


class Authorization(BaseModel):
    default_role: Literal["none", "viewer"] = "viewer"
    slack_team_ids: list[str] = []  # empty: the team of the bot token (checked at runtime)
    slack_channels: list[str] = []  # empty: any channel
    discord_channels: list[str] = []
    discord_guilds: list[str] = []
    grants: list[Grant] = []
    # Acknowledge (``ack KEY``, the alert's button) silences an incident's re-announcements:
    # it needs this role for the incident's app ("viewer" lets anyone who may read ack)
    ack_role: Role = "operator"
    # Slack user-group members are asked again after ``group_cache_fresh`` seconds; while Slack
    # errors the last answer is used up to ``group_cache_max_age``, never longer
    group_cache_fresh: Annotated[float, Field(ge=0, le=3600)] = 300.0
    group_cache_max_age: Annotated[float, Field(ge=0, le=86400)] = 3600.0

    @model_validator(mode="after")
    def _cache_ages(self) -> Authorization:
        if self.group_cache_max_age < self.group_cache_fresh:
            raise ValueError("group_cache_max_age must be at least group_cache_fresh")
        return self


class Route(BaseModel):
    """Where alerts of matching apps go. Patterns are fnmatch; empty matches everything. An
    app pattern matches the app's name alone or as shown (``team-a/web@homelab``)."""

    projects: list[str] = []
    apps: list[str] = []
    namespaces: list[str] = []
    instances: list[str] = []  # Argo CD instances (names or patterns)
    slack_channel: str | None = None
    discord_channel: str | None = None

    def matches(self, app: str, project: str, namespace: str, instance: str = "") -> bool:
        def ok(patterns: list[str], *values: str) -> bool:
            return not patterns or any(fnmatch.fnmatch(v, p) for p in patterns for v in values)

        return (
            (not self.apps or any(_app_matches(app, p) for p in self.apps))
            and ok(self.projects, project)
            and ok(self.namespaces, namespace)
            and ok(self.instances, instance)
        )


class ArgoInstance(BaseModel):
    """One Argo CD the bot talks to (the YAML ``instances:`` list). The token is given
    directly or, better, as the name of an environment variable holding it."""

    model_config = {"extra": "forbid"}

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
    url: str
    token: SecretStr | None = None
    token_env: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    ui_url: str | None = None
    namespace: str = "argocd"  # Argo CD's own namespace: its apps are named without it

    @field_validator("url", "ui_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @model_validator(mode="after")
    def _one_token(self) -> ArgoInstance:
        if (self.token is None) == (self.token_env is None):
            raise ValueError(f"instance {self.name}: set exactly one of token and token_env")
        return self

    def secret(self) -> str:
        """The token; ``ConfigError`` when its environment variable is not set."""
        if self.token is not None:
            return self.token.get_secret_value()
        value = os.environ.get(self.token_env or "", "")
        if not value:
            raise ConfigError(
                [
                    f"Argo CD instance {self.name}: the environment variable {self.token_env} "
                    "(its token_env) is not set."
                ]
            )
        return value


class Cluster(BaseModel):
    """Maps an Argo CD destination (cluster name or server URL) to a kubeconfig context."""

    model_config = {"extra": "forbid"}

    destination: str | None = None  # Argo CD's cluster name, or its server URL
    server: str | None = None  # the server URL, when ``destination`` is the name
    context: str = ""  # "" = in-cluster, or the kubeconfig's current context
    instance: str = ""  # only for apps of this Argo CD instance; "" = any
    kubeconfig: str = ""  # another kubeconfig file than KUBECONFIG

    @model_validator(mode="after")
    def _named(self) -> Cluster:
        if not (self.destination or self.server):
            raise ValueError("a cluster needs destination (name or server URL) or server")
        return self


class AutoRollback(BaseModel):
    """The auto-rollback policy (commands/autorollback.py). Apps opt in with the Application
    annotation ``chatops.argocd-chatops.io/auto-rollback: "on"|"propose"`` (``"off"`` opts an
    app out of a pattern below), or by these fnmatch patterns of app and project names (then
    with ``mode``). Nothing matches by default: the policy is off for every app."""

    apps: list[str] = []
    projects: list[str] = []
    mode: Literal["on", "propose"] = "on"
    dry_run: bool = False  # decide and audit, never write to Git or post a button
    per_app_per_hour: Annotated[int, Field(ge=0, le=100)] = 2
    global_per_hour: Annotated[int, Field(ge=0, le=1000)] = 10
    # how long an app may stay Degraded after an automated sync before the policy acts;
    # None: the alerts' degraded_grace
    degraded_grace: Annotated[float | None, Field(ge=0, le=86400)] = None


class CommandNames(BaseModel):
    sync: str = "sync"
    rollback: str = "rollback"
    selfheal: str = "selfheal"
    verify_rootless: str = "verify-rootless"
    status: str = "status"
    help: str = "help"
    autorollback: str = "autorollback"
