# vipgate container image: the one the manifests name (ghcr.io/vipgate/vipgate:v<version>).
#
#   docker build -t ghcr.io/vipgate/vipgate:v0.1.0 .
#
# UNVERIFIED: no container engine exists on the machines this project is developed on, so this
# file has never been built. It only installs the wheel built from this checkout.
#
# The container runs as root: it needs NET_ADMIN (put the VIP on an interface, TCP MD5 keys on
# the BGP sockets) and NET_RAW, granted by the manifest's securityContext, with hostNetwork.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Only what the wheel is made of (no tests, lab or virtualenv in the build context used).
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip install --no-cache-dir --upgrade pip build \
 && python -m build --wheel --outdir /dist .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /dist/*.whl /tmp/
RUN python -m pip install --no-cache-dir /tmp/*.whl \
 && rm -f /tmp/*.whl \
 && vipgate version
LABEL org.opencontainers.image.title="vipgate" \
      org.opencontainers.image.description="Health-gated BGP announcer for the Kubernetes control-plane VIP" \
      org.opencontainers.image.licenses="Apache-2.0"
USER root
# Metrics (prometheus_server, default :2112); with hostNetwork this is the node's port.
EXPOSE 2112
ENTRYPOINT ["vipgate"]
CMD ["manager"]
