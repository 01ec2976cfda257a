# syntax=docker/dockerfile:1
#
# Build: docker build -t gatehouse:0.1.0 .
# Run:   docker run --rm -v "$PWD/config:/etc/gatehouse:ro" -p 8443:8443 -p 8080:8080 -p 9901:9901 gatehouse:0.1.0
#        (the container runs as uid 65532: the mounted keys must be readable by it, and
#        [listen] admin must be 0.0.0.0:9901 to be reachable from outside; see deploy/README.md)
#
# The build context is allow-listed in .dockerignore; scripts/lint-packaging checks that
# everything the build stage COPYs is in the context and is enough for cargo.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Cargo.toml declares [[bench]] targets: cargo refuses to read the manifest without them.
COPY benches ./benches
COPY src ./src
RUN cargo build --locked --release \
 && strip target/release/gatehouse

# distroless/cc: glibc + libgcc only, no shell, no package manager; ":nonroot" runs as
# uid/gid 65532. There is no HEALTHCHECK: the image has no shell or curl and gatehouse has
# no probe subcommand; orchestrators probe GET /healthz (liveness) and GET /readyz
# (readiness) on the admin listener instead.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="A standalone mTLS ingress proxy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
# The reference config; mount your own /etc/gatehouse (it names certs/ next to it).
COPY config/gatehouse.toml /etc/gatehouse/gatehouse.toml
USER 65532:65532
# https, http (301 to https), admin (/metrics /healthz /readyz /certs)
EXPOSE 8443 8080 9901
# SIGTERM drains (stop accepting, /readyz 503, finish in-flight requests up to drain_timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run", "-c", "/etc/gatehouse/gatehouse.toml"]
