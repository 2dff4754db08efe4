# dcos-driver image: `serve` (the driver) and `sim` (the DC/OS simulator) from one binary.
#
#   docker build -t dcos-driver .
#   docker run --rm -v "$PWD/examples:/etc/dcos-driver:ro" dcos-driver config check
#
# Build stage: dependencies are compiled in their own layer (from Cargo.toml + Cargo.lock only), so a
# change under src/ rebuilds only the crate itself. Works with the classic builder and BuildKit.
FROM rust:1-bookworm AS builder
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin dcos-driver \
 && rm -rf src
COPY src ./src
# Copied files keep their (older) mtimes: touch them so cargo rebuilds the real crate, not the stub.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin dcos-driver \
 && install -m 0755 target/release/dcos-driver /usr/local/bin/dcos-driver

# Runtime stage: the binary, CA certificates for DC/OS over TLS, and an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 dcos-driver \
 && useradd --system --uid 10001 --gid dcos-driver --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin dcos-driver \
 && mkdir -p /etc/dcos-driver
COPY --from=builder /usr/local/bin/dcos-driver /usr/local/bin/dcos-driver
USER 10001:10001
# 9090: /healthz, /readyz, /metrics (set driver.http_listen = "0.0.0.0:9090"); 8080: `sim`.
EXPOSE 9090 8080
ENTRYPOINT ["dcos-driver"]
# Mount the configuration at /etc/dcos-driver/ (see examples/dcos-driver.toml); secrets via environment.
CMD ["serve", "--config", "/etc/dcos-driver/dcos-driver.toml"]
