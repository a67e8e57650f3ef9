# pylb: the drop-in for tutum/haproxy and dockercloud-haproxy (see docs/image.md).
#
#   docker build -t pylb .                      # a machine with a registry and PyPI
#   scripts/build-image                         # here: no registry, no PyPI inside containers
#
#   docker run -d -p 80:80 -p 443:443 -v /var/run/docker.sock:/var/run/docker.sock:ro pylb
#   docker run -d --name web1 pylb hello        # the tutum/hello-world stand-in, on port 80
#
# The base is a build argument: any image with python3 (3.11 or newer) and its venv module. It
# must be the same for both stages (the venv's python is a link to the base's python3).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# The label lets scripts/build-image prune this project's superseded images, and only those.
LABEL org.opencontainers.image.title="pylb"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY . /src
# From wheels/ in the build context when there are any (scripts/build-image puts them there,
# pylb's own wheel among them), else from PyPI. pip and setuptools leave the venv afterwards:
# nothing in the image needs them.
RUN set -eu; \
    python3 -m venv /opt/pylb; \
    if ls /src/wheels/*.whl >/dev/null 2>&1; then \
        /opt/pylb/bin/pip install --no-index --find-links /src/wheels pylb; \
    else \
        /opt/pylb/bin/pip install /src; \
    fi; \
    /opt/pylb/bin/pylb --help >/dev/null; \
    /opt/pylb/bin/pip uninstall -y -q pip setuptools

FROM ${BASE}
LABEL org.opencontainers.image.title="pylb" \
      org.opencontainers.image.description="A pure-Python load balancer for containers: a drop-in for tutum/haproxy and dockercloud-haproxy"
COPY --from=build /opt/pylb /opt/pylb
# Discovery by default (docker when the socket is mounted, else --link variables). As an
# environment default rather than a CMD, so that `-e PYLB_BACKENDS=...` or `--backend` turn it off
# instead of contradicting it; `docker run pylb hello` and `docker run pylb --bind ...` work as well.
ENV PATH=/opt/pylb/bin:$PATH PYTHONUNBUFFERED=1 PYLB_DISCOVER=auto
# What dockercloud-haproxy users had: an httplog line per request on standard output, the stats
# page on 1936 (set STATS_AUTH=user:password to protect it; STATS_PORT=off to close it), and
# Prometheus metrics at :1936/metrics. LOG_FORMAT=off turns the access log off.
ENV LOG_FORMAT=haproxy STATS_PORT=1936
EXPOSE 80 443 1936
# pylb is PID 1: on SIGTERM it stops accepting, lets requests in flight finish (PYLB_GRACE,
# 10 s; keep `docker stop -t` above it) and exits 0.
STOPSIGNAL SIGTERM
# Any HTTP answer from the first listener (even a 503: no backends yet) means pylb is alive.
HEALTHCHECK --interval=10s --timeout=3s CMD ["pylb", "healthcheck"]
ENTRYPOINT ["pylb"]
CMD []
