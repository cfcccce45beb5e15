"""Composition: settings -> clients -> ``commands.context.Services`` (and the HTTP limits).

The only place that turns configuration into live clients, so the CLI, the hook Jobs, CI and
``chatops serve`` all run the same command core against the same connections.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from bot.config.git_credentials import git_credential_problems
from bot.config.models import ArgoInstance
from bot.http_limits import HttpLimits
from bot.settings import ConfigError, Settings
from bot.state.store import Store, StoreTimers
from commands.argocd import links
from commands.argocd.client import ArgoCD
from commands.context import Instance, Services
from commands.kube.clusters import ClusterMap, ClusterRoute

if TYPE_CHECKING:
    from commands.githost.github.app_auth import GitHubAppAuth
    from commands.githost.port import GitHost
    from commands.kube.ops import KubeOps

log = logging.getLogger(__name__)


def argocd(settings: Settings, instance: str | None = None) -> ArgoCD:
    """The client of one Argo CD instance (default: ``settings.default_instance``)."""
    if not settings.argo_instances:
        settings.require("argocd_url", "argocd_token", why="talking to Argo CD")
    name = instance or settings.default_instance
    for inst in settings.argo_instances:
        if inst.name == name:
            return argocd_client(inst)
    known = ", ".join(i.name for i in settings.argo_instances)
    raise ConfigError([f"There is no Argo CD instance '{name}' (configured: {known})."])


def _tls(inst: ArgoInstance) -> bool | str:
    if inst.ca_bundle:
        if not os.path.exists(inst.ca_bundle):
            where = "CHATOPS_ARGOCD_CA_BUNDLE" if inst.name == "default" else inst.name
            raise ConfigError([f"{where}: the CA bundle {inst.ca_bundle} does not exist."])
        return inst.ca_bundle
    return not inst.insecure


def argocd_client(inst: ArgoInstance) -> ArgoCD:
    return ArgoCD(inst.url, inst.secret(), verify=_tls(inst), namespace=inst.namespace)


def instances(settings: Settings) -> dict[str, Instance]:
    """Every configured Argo CD instance, connected (no request is made yet). Every token and
    CA bundle is checked before any client is built."""
    listed = settings.argo_instances
    problems = []
    for inst in listed:
        try:
            inst.secret()
            _tls(inst)
        except ConfigError as e:
            problems += e.problems
    if problems:
        raise ConfigError(problems)
    return {
        i.name: Instance(i.name, argocd_client(i), links.ui_base(i.ui_url, i.url)) for i in listed
    }


def kube_api_client() -> Any | None:
    """In-cluster config, else KUBECONFIG / ~/.kube/config; None when neither exists."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            # KUBECONFIG as it is now: the client reads it once, when first imported
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)  # type: ignore[no-untyped-call]
        except (config.ConfigException, FileNotFoundError, TypeError):
            return None
    return client.ApiClient()


def kube(settings: Settings, api_client: Any | None = None) -> KubeOps | None:
    api = api_client if api_client is not None else kube_api_client()
    if api is None:
        return None
    from commands.kube.ops import KubeOps

    return KubeOps(api, exec_enabled=settings.kube_exec)


def context_api_client(context: str, kubeconfig: str = "") -> Any | None:
    """A client for one kubeconfig context (of ``kubeconfig``, else KUBECONFIG, else
    ~/.kube/config); None when the file or the context cannot be loaded."""
    from kubernetes import config

    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        return config.new_client_from_config(config_file=path, context=context)  # type: ignore[no-untyped-call]
    except (config.ConfigException, FileNotFoundError, TypeError, ValueError) as e:
        log.warning("kubeconfig context %s cannot be loaded: %s", context, type(e).__name__)
        return None


def cluster_map(settings: Settings, default: KubeOps | None) -> ClusterMap | None:
    """The ``clusters:`` setting with clients built on first use; None when it is empty.
    A route to context "" (in-cluster / current) uses ``default``."""
    if not settings.clusters:
        return None
    routes: list[ClusterRoute] = []
    for c in settings.clusters:
        for dest in (c.destination, c.server):
            if dest:
                routes.append(ClusterRoute(dest, c.context, c.instance, c.kubeconfig))

    def connect(context: str, kubeconfig: str) -> KubeOps | None:
        if not context and not kubeconfig:
            return default
        api = context_api_client(context, kubeconfig)
        return kube(settings, api) if api is not None else None

    return ClusterMap(routes, connect, strict=settings.strict_clusters, shared=default)


def git(settings: Settings) -> GitHost | None:
    """The Git host of /rollback, authenticated by CHATOPS_GIT_TOKEN or as a GitHub App."""
    if not settings.git_repo:
        return None
    from commands.githost import factory

    token: str | Callable[[], Awaitable[str]]
    if settings.git_token:
        token = settings.git_token.get_secret_value()
    elif settings.uses_git_app:
        token = git_app_auth(settings)
    else:
        return None
    return factory.connect(
        settings.git_provider, settings.git_api_base, token, settings.git_repo, settings.git_branch
    )


def git_app_auth(settings: Settings) -> GitHubAppAuth:
    """Installation tokens for the GitHub App of CHATOPS_GIT_APP_*; ConfigError if its key
    cannot be read or is not an RSA private key (the key itself is never shown)."""
    from commands import errors
    from commands.githost.github.app_auth import GitHubAppAuth

    app_id, installation = settings.git_app_id, settings.git_app_installation_id
    if not (app_id and installation and settings.git_app_key_given):
        raise ConfigError(git_credential_problems(settings) or ["GitHub App is not configured."])
    if settings.git_app_private_key:
        pem, source = settings.git_app_private_key.get_secret_value(), "CHATOPS_GIT_APP_PRIVATE_KEY"
    else:
        path = settings.git_app_private_key_file or ""
        source = "CHATOPS_GIT_APP_PRIVATE_KEY_FILE"
        try:
            pem = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or type(e).__name__
            raise ConfigError([f"{source}: {path} cannot be read ({reason})."]) from None
    try:
        return GitHubAppAuth(settings.git_api_base, app_id, installation, pem)
    except errors.BadInput as e:
        raise ConfigError([f"{source}: {e.user_message}"]) from None


def services(
    settings: Settings,
    *,
    store: Store | None = None,
    with_kube: bool = True,
    kube_client: Any | None = None,
    instance: str | None = None,
) -> Services:
    """The services of ``instance`` (default: the default instance) knowing every other."""
    if not settings.argo_instances:
        settings.require("argocd_url", "argocd_token", why="talking to Argo CD")
    conns = instances(settings)
    name = instance or settings.default_instance
    if name not in conns:
        raise ConfigError(
            [f"There is no Argo CD instance '{name}' (configured: {', '.join(conns)})."]
        )
    default_kube = kube(settings, kube_client) if with_kube else None
    return Services(
        argocd=conns[name].argocd,
        kube=default_kube,
        timers=StoreTimers(store) if store is not None else None,
        git=git(settings),
        ui_url=conns[name].ui_url,
        instance=name,
        instances=conns if len(conns) > 1 else {},
        clusters=cluster_map(settings, default_kube) if with_kube else None,
    )


async def close(svc: Services) -> None:
    """Close every Argo CD client of ``svc`` and the cluster clients it built."""
    clients = {id(i.argocd): i.argocd for i in svc.instances.values()}
    clients[id(svc.argocd)] = svc.argocd
    for client in clients.values():
        await client.aclose()
    if svc.clusters is not None:
        svc.clusters.close()


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(
        header_timeout=settings.http_header_timeout,
        body_timeout=settings.http_body_timeout,
        keepalive_timeout=settings.http_keepalive_timeout,
        max_connections=settings.http_max_connections,
    )


def safe_url(url: str) -> str:
    """A URL for a log line: without user:password@ or a query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
