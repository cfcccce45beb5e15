FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home chatops
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY notifiers ./notifiers
RUN pip install --no-cache-dir .
USER 10001
ENV CHATOPS_STATE_DB=/data/chatops.db CHATOPS_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["chatops"]
CMD ["serve"]
