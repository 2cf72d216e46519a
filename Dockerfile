# geoetl: one image for the API, the workers, the janitor and `geoetl db upgrade`.
#
#   docker build -t geoetl .
#   docker run -p 8000:8000 geoetl                      # API + 1 worker + janitor, embedded
#   docker run geoetl worker --queues raster --concurrency 2
#
# GDAL, PROJ and GEOS come inside the rasterio, pyogrio, pyproj and shapely wheels: no
# system GDAL. Other brokers' client libraries go in with EXTRA_PACKAGES, e.g.
#   docker build --build-arg EXTRA_PACKAGES="kombu[sqs]" -t geoetl .
# Not built or run on the machines these files were written on (no Docker engine there).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: geoetl and its dependencies in a virtualenv --------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/geoetl

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src

ARG EXTRAS=cloud,celery
ARG EXTRA_PACKAGES=
# geoetl is built into a wheel, then installed from it with its dependencies: the compiled
# ones come as wheels (the slim image has no compiler), a few pure-Python ones as sources.
RUN /opt/geoetl/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/geoetl/bin/pip install "$(ls /tmp/wheels/geoetl-*.whl)[${EXTRAS}]" ${EXTRA_PACKAGES} \
 && /opt/geoetl/bin/geoetl --help >/dev/null

# --- runtime: the virtualenv and a user without privileges -------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG UID=10001
RUN groupadd --gid "${UID}" geoetl \
 && useradd --uid "${UID}" --gid geoetl --no-create-home \
        --home-dir /var/lib/geoetl --shell /usr/sbin/nologin geoetl \
 && install -d -o geoetl -g geoetl -m 0750 /var/lib/geoetl

COPY --from=builder /opt/geoetl /opt/geoetl

# GEOETL_HOME holds the admin token file (API) and the scratch space of running tasks
# (workers): local to each container. State lives in the database and the object store.
# The wheels' GDAL looks for CA certificates where CentOS keeps them; Debian's are here.
ENV PATH="/opt/geoetl/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    GEOETL_HOME=/var/lib/geoetl \
    GDAL_CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PROJ_CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

USER ${UID}:${UID}
WORKDIR /var/lib/geoetl
VOLUME ["/var/lib/geoetl"]
EXPOSE 8000

# Readiness of `geoetl serve` on its default port: the database and the object store answer
# (/readyz is 503 otherwise). Containers running workers or the janitor serve no HTTP: turn
# this off for them (compose.yaml does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

ENTRYPOINT ["geoetl"]
CMD ["serve", "--host", "0.0.0.0"]
