# syntax=docker/dockerfile:1
# The invar image: `docker run --rm ghcr.io/OWNER/invar demo --dir /tmp/d`, or `invar watch`
# with a config mounted at /etc/invar/invar.yaml (the default command). docs/INSTALL.md.
# scripts/test-packages.sh assembles this final stage's root filesystem without Docker and
# runs its RUN groupadd line, USER, WORKDIR and HEALTHCHECK command: keep each on one line.

FROM rust:1-bookworm AS build
WORKDIR /src
# The commit and date `invar --version` shows (the build context has no .git).
ARG INVAR_BUILD_COMMIT=unknown
ARG SOURCE_DATE_EPOCH
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist -p invar && cp target/dist/invar /usr/local/bin/invar

FROM debian:bookworm-slim
# CA certificates for the system trust store (invar's TLS bundles webpki roots; commands a
# config runs may not).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/invar /usr/local/bin/invar
RUN groupadd --system --gid 10001 invar && useradd --system --uid 10001 --gid invar --home-dir /var/lib/invar --create-home --shell /usr/sbin/nologin invar
USER invar
WORKDIR /var/lib/invar
EXPOSE 8080
# Liveness: /livez answers 200 whenever the process serves and never reads the store, so a
# store outage (/readyz 503) or an overdue suite (/healthz 503) does not restart a watcher that
# recovers by itself. bash's /dev/tcp: the image has no curl. INVAR_HEALTH_PORT: set it when
# --listen uses another port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/${INVAR_HEALTH_PORT:-8080} && printf "GET /livez HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 && head -n1 <&3 | grep -q " 200 "'
ENTRYPOINT ["invar"]
CMD ["watch", "--config", "/etc/invar/invar.yaml", "--listen", "0.0.0.0:8080"]
