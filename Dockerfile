# syntax=docker/dockerfile:1
# argocd-chatops: `chatops serve` (the bot), `chatops hook ...` (Argo CD hook Jobs), any CLI command.
# Built and pushed by .github/workflows/release.yaml on a version tag; deploy/ runs it as UID 10001
# with a read-only root filesystem and its state in the /data volume.

# The base image, pinned by digest (python:3.12-slim-bookworm). Dependabot (.github/dependabot.yml)
# proposes new digests; check one by hand with `docker buildx imagetools inspect python:3.12-slim-bookworm`.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:782412e85d0f0984994c290652577d4018aff08145c85b262bb63dc0c7522254

# --- build: a virtualenv with the dependencies, then the project --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /venv
# Dependencies in their own layer: it is rebuilt only when pyproject.toml changes, not on every
# code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /venv/bin/pip install -r requirements.txt
COPY README.md ./
COPY bot ./bot
COPY commands ./commands
COPY notifiers ./notifiers
RUN /venv/bin/pip install --no-deps . && /venv/bin/chatops --help > /dev/null

# --- runtime --------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="argocd-chatops" \
      org.opencontainers.image.description="Argo CD and Kubernetes operations from Slack and Discord: sync, git-revert rollback, self-heal, rootless checks, alerts." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/argocd-chatops/argocd-chatops"
# git: `chatops ci sync` diffs a checkout. The user owns nothing but /data.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 chatops \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin chatops \
    && mkdir /data \
    && chown 10001:10001 /data \
    && chmod 0750 /data
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHATOPS_STATE_DB=/data/chatops.db \
    CHATOPS_LISTEN=0.0.0.0:8080
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["chatops"]
CMD ["serve"]
