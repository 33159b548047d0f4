# Stand-ins for the compose stack's third-party images (rabbitmq, postgres, prom/prometheus), built from
# Debian's packages on the image check's Debian base, for machines that reach Debian's mirror but no
# container registry. CI only (deploy/compose-check.sh); never a production image.
#
#   docker build -f deploy/ci/services.Dockerfile --target rabbitmq --build-arg BASE=... deploy/ci
# CI-only stand-ins: they follow bookworm's current packages (no pins) and run as the packages' own users.
# hadolint global ignore=DL3008,DL3066
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS rabbitmq
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o rabbitmq -g rabbitmq /var/lib/rabbitmq /etc/rabbitmq/conf.d
USER rabbitmq
CMD ["rabbitmq-server"]

FROM ${BASE} AS postgres
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["postgres-entrypoint"]

FROM ${BASE} AS prometheus
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o prometheus -g prometheus /prometheus
USER prometheus
ENTRYPOINT ["prometheus"]
