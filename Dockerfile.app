# syntax=docker/dockerfile:1.7
# The Immich machine-learning worker for Hailo-8/8L, on top of Dockerfile.hailo-base.
#
#   docker build -f Dockerfile.app --build-arg BASE_IMAGE=ml-target-hailo-base:4.23.0 \
#     -t ml-target-hailo:latest .
#
# HEFs are not baked in: they live in the /models volume (fetch-models fills it), so changing
# models or CLIP backend never needs a rebuild.
ARG BASE_IMAGE=ml-target-hailo-base:4.23.0
FROM ${BASE_IMAGE}

ARG APP_UID=10001

# The runtime dependencies (with onnxruntime and onnx: Immich's own face recogniser runs on the CPU,
# and fetch-models reads the CLIP text files out of Immich's textual model) plus `verify` (httpx,
# matplotlib); no emulator and no test extras. Pinned by constraints.txt when the repository has one (the same
# pins CI tested).
COPY pyproject.toml README.md LICENSE constraints.tx[t] /src/
COPY ml_target /src/ml_target
# hadolint ignore=DL3013
RUN if [ -f /src/constraints.txt ]; then set -- -c /src/constraints.txt; fi \
 && pip install --no-cache-dir "$@" "/src[verify]" \
 && rm -rf /src \
 && groupadd --gid "$APP_UID" immich-ml \
 && useradd --uid "$APP_UID" --gid immich-ml --home-dir /app --create-home --shell /usr/sbin/nologin immich-ml \
 && install -d -o immich-ml -g immich-ml /models

# The worker caps glibc's heap arenas itself when it starts (ml_target/heap.py); MALLOC_ARENA_MAX
# here would override it, MALLOC_MMAP_THRESHOLD_ trades CPU for memory (README, Memory).
ENV MODELS_DIR=/models \
    HAILO_DEVICE=hailort \
    IMMICH_HOST=:: \
    IMMICH_PORT=3003

USER ${APP_UID}
WORKDIR /app
VOLUME ["/models"]
EXPOSE 3003

# Immich pings with a 2 s timeout, and so does this check: any non-2xx or a slower answer makes
# urlopen raise (exit 1). Docker's own 5 s budget leaves room for Python's start-up on a Pi.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ping' % os.environ.get('IMMICH_PORT', '3003'), timeout=2)"]

# tini reaps children and forwards SIGTERM, so `docker stop` releases /dev/hailo0 cleanly. `serve`
# drains in-flight requests for up to 20 s: stop with `-t 30` (compose: stop_grace_period: 30s).
ENTRYPOINT ["/usr/bin/tini", "--", "python", "-m", "ml_target"]
CMD ["serve"]
