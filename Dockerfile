# syntax=docker/dockerfile:1
# Build: docker build -t gatehouse .
# Run:   docker run -v $PWD/config:/etc/gatehouse:ro -p 8443:8443 -p 8080:8080 gatehouse
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --locked --release && strip target/release/gatehouse

# distroless/cc: glibc + libgcc only, no shell; "nonroot" runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY config/gatehouse.toml /etc/gatehouse/gatehouse.toml
USER 65532:65532
EXPOSE 8443 8080 9901
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run", "-c", "/etc/gatehouse/gatehouse.toml"]
