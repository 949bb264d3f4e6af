# Gantry images. The watchdog image is `FROM scratch` and holds only /watchdog, a fully
# static binary; function images copy it in and use it as their ENTRYPOINT:
#
#   COPY --from=gantry/watchdog:latest /watchdog /usr/local/bin/watchdog
#   ENTRYPOINT ["/usr/local/bin/watchdog"]
#
# Two ways to build it:
#
#   make watchdog-image            # = docker build --target watchdog-prebuilt -t gantry/watchdog:latest .
#       Packages the host-built target/static/watchdog (`make watchdog-static`).
#       Needs no registry: nothing is pulled. Used by CI and on offline machines.
#
#   docker build --target watchdog -t gantry/watchdog:latest .
#       Builds the watchdog from source inside ${RUST_IMAGE} (pulled from a registry).
#       The normal path for anyone with registry access. Use BuildKit (the default
#       since Docker 23): it builds only the stages the target needs. The legacy builder
#       also runs watchdog-prebuilt first, which fails unless target/static/watchdog
#       exists (`make watchdog-static`); its output is then simply discarded.
#
# Stage order matters: the legacy (non-BuildKit) builder builds every stage up to the
# --target in file order, so watchdog-prebuilt comes FIRST; building it never touches
# ${RUST_IMAGE} or any registry, with either builder. There is deliberately no
# `# syntax=` line: under BuildKit it would pull a frontend image from the registry.

# Global build argument (must precede the first FROM to be usable in a later FROM line).
ARG RUST_IMAGE=rust:1-bookworm

# ---------------------------------------------------------------------------------------
# watchdog-prebuilt: the host-built static watchdog, nothing else.
# `.dockerignore` keeps target/ out of the context except target/static/watchdog.
# ---------------------------------------------------------------------------------------
FROM scratch AS watchdog-prebuilt
COPY target/static/watchdog /watchdog
ENTRYPOINT ["/watchdog"]

# ---------------------------------------------------------------------------------------
# build: the static watchdog from source (musl, profile min-size) - the same build as
# `make watchdog-static`. The development machine has no registry, so this stage could
# not be built there with the real ${RUST_IMAGE}; it was checked with a stand-in image of
# the host's Rust toolchain (`--build-arg RUST_IMAGE=<that image> --network=none`), which
# produced the same static binary as `make watchdog-static`.
# ---------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# The whole workspace (every member crate, Cargo.lock, and .cargo/config.toml with the
# musl rustflags that make the binary non-PIE static); .dockerignore drops build output,
# the fuzzing crate and .git.
COPY . .
RUN cargo build --locked --profile min-size --target x86_64-unknown-linux-musl -p gantry-watchdog \
    && cp target/x86_64-unknown-linux-musl/min-size/watchdog /watchdog \
    && /watchdog --version

# ---------------------------------------------------------------------------------------
# watchdog: FROM scratch, only /watchdog, built from source.
# ---------------------------------------------------------------------------------------
FROM scratch AS watchdog
COPY --from=build /watchdog /watchdog
ENTRYPOINT ["/watchdog"]
