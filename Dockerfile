# One image for the Prefect server, the Prefect worker and the Dask scheduler and workers: they must run the
# same package versions. Build: docker compose build (or docker build -t curate .).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
WORKDIR /opt/curate

COPY pyproject.toml constraints.txt README.md ./
COPY flows/ flows/
COPY tasks/ tasks/
COPY expectations/ expectations/
COPY deployments/ deployments/
COPY examples/ examples/
# editable: the code, expectations/ and deployments/ stay together under /opt/curate (the default gate
# suites are found next to the package, and deployments start from this directory)
RUN pip install -c constraints.txt -e .

# curate runs as a user of its own, never root: the code is root's and read-only to it; /certs is where the
# dask-tls service writes the Dask certificates (a named volume takes this folder's owner when first mounted)
RUN useradd --create-home --uid 10001 curate && mkdir /certs && chown curate /certs
USER curate

CMD ["curate", "--help"]
