# The platform in one image: `serve` by default, `worker` (or any other command) by argument.
# Not built on the development machines (no Docker engine there): see the README.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The serving path needs no torch: the offline model runs on ONNX Runtime. The transformers
# backend is an extra; when it is wanted, the CPU build of torch is pinned (no CUDA download).
ARG EXTRAS=""
RUN python -m venv /opt/venv \
 && if [ -n "$EXTRAS" ]; then \
      /opt/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0; \
    fi \
 && /opt/venv/bin/pip install ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 API_HOST=0.0.0.0 LOG_FORMAT=json
USER app
WORKDIR /home/app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"]
ENTRYPOINT ["sentiment-platform"]
CMD ["serve"]
