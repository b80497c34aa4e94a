# Container image for skype-gateway.
#
# Build:  docker build -t skype-gateway:0.1.0 \
#           --build-arg REVISION="$(git rev-parse HEAD)" \
#           --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# The image holds the gateway alone: the Graph simulator behind `--demo` is left out (the crate's
# `demo` feature is off), so a production binary cannot start it. A demo image, for the chart's
# demo.enabled: add `--build-arg FEATURES=demo` and tag it apart (e.g. 0.1.0-demo).
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> cacher (dependencies
# only, its own layer) -> builder (the crate itself) -> runtime (distroless, no shell).
# A change to src/ reuses the cacher layer; only Cargo.toml/Cargo.lock changes rebuild it.

# One Rust version for every build stage. Bookworm, because the runtime is Debian 12 (distroless
# cc-debian12): the binary links against the build image's glibc and must not need a newer one.
ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78
# Cargo features on top of none; `demo` embeds the Graph simulator.
ARG FEATURES=""

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
# The slim image already ships gcc and libc6-dev, which ring (and blake3's C/asm) need, so no
# apt-get layer is required here.
RUN cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS cacher
ARG FEATURES
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --no-default-features --features "${FEATURES}" \
      --package skype-gateway --recipe-path recipe.json

FROM chef AS builder
ARG FEATURES
COPY . .
# Compiled dependencies and the registry they came from, so the final build is offline work.
COPY --from=cacher /src/target target
COPY --from=cacher ${CARGO_HOME} ${CARGO_HOME}
RUN cargo build --release --locked --no-default-features --features "${FEATURES}" \
      --package skype-gateway --bin skype-gateway

# glibc + libgcc (what a Rust binary links against) and CA certificates; no shell, no package
# manager. The gateway uses rustls with compiled-in webpki roots, so it needs nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="skype-gateway" \
      org.opencontainers.image.description="REST gateway in front of Microsoft Graph's Skype for Business activity-counts report" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
# Owned by root and not writable by the process that runs it.
COPY --from=builder /src/target/release/skype-gateway /usr/local/bin/skype-gateway
# Numeric, so Kubernetes' runAsNonRoot can verify it without resolving a user name.
USER 65532:65532
EXPOSE 8080
# No HEALTHCHECK: Kubernetes probes /livez and /readyz (see charts/skype-gateway).
ENTRYPOINT ["/usr/local/bin/skype-gateway"]
