# llm-firewall: slim image, non-root, rules and policies baked in (override them with volumes
# mounted on /app/rules and /app/policies).
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY llm_firewall ./llm_firewall
COPY rules ./rules
COPY policies ./policies
COPY schemas ./schemas
RUN pip install --no-cache-dir --prefix=/install ".[redis,fast]"

FROM python:3.11.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin firewall \
 && mkdir -p /app/data && chown firewall /app/data
COPY --from=build /install /usr/local
COPY rules /app/rules
COPY policies /app/policies
WORKDIR /app
ENV LLM_FIREWALL_RULES_DIR=/app/rules \
    LLM_FIREWALL_POLICIES_DIR=/app/policies \
    LLM_FIREWALL_DATA_DIR=/app/data \
    LLM_FIREWALL_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
USER firewall
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["llm-firewall", "serve", "--host", "0.0.0.0", "--port", "8080"]
