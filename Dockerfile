# vipgate container image: the one the manifests name (ghcr.io/vipgate/vipgate:v<version>).
#
#   podman build -t ghcr.io/vipgate/vipgate:v<version> .   (or docker build; needs a registry;
#                                                     <version>: src/vipgate/__init__.py)
#   ./scripts/image.sh                                    (no registry: Debian base, localhost/vipgate:dev)
#
# BASE_IMAGE is any image with Python 3.11+ as `python3` and its venv module: the official
# python image by default; scripts/image.sh passes a Debian bookworm base made by mmdebstrap
# (Debian's python3 and python3-venv) and PIP_ARGS that make pip use only its local wheelhouse.
# Built and run by tests/e2e/test_image.py (Debian's podman 4.3).
#
# The container runs as root: it needs NET_ADMIN (put the VIP on an interface, TCP MD5 keys on
# the BGP sockets) and NET_RAW, granted by the manifest's securityContext, with hostNetwork.
# It writes nothing to its root filesystem (readOnlyRootFilesystem in the manifests).

ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Extra pip arguments, e.g. "--no-index --find-links /src/build/wheelhouse" for an offline build.
ARG PIP_ARGS=""
# Only what the wheel is made of (.dockerignore keeps tests, lab and virtualenvs out).
COPY . /src
# A virtual environment, not the system Python: Debian's python3 refuses pip installs into the
# system (PEP 668) and has no pip; the venv module brings its own. pip and setuptools are
# removed from the venv afterwards: the daemon needs neither.
RUN python3 -m venv /opt/vipgate \
 && /opt/vipgate/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_ARGS} /src \
 && /opt/vipgate/bin/pip uninstall --yes --quiet setuptools pip \
 && /opt/vipgate/bin/vipgate version

FROM ${BASE_IMAGE}
ENV PATH=/opt/vipgate/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=1 \
    MALLOC_MMAP_THRESHOLD_=131072
COPY --from=build /opt/vipgate /opt/vipgate
RUN vipgate version
LABEL org.opencontainers.image.title="vipgate" \
      org.opencontainers.image.description="Health-gated BGP announcer for the Kubernetes control-plane VIP" \
      org.opencontainers.image.licenses="Apache-2.0"
USER root
# Metrics (prometheus_server, default :2112); with hostNetwork this is the node's port.
EXPOSE 2112
ENTRYPOINT ["vipgate"]
CMD ["manager"]
