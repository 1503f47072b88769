# syntax=docker/dockerfile:1
#
# datacube's container image: one binary on Debian's slim base, running as an unprivileged user,
# listening on 0.0.0.0:8080, its SQLite database in the /data volume.
#
#   docker build -t datacube .
#   docker run -d --name datacube -p 8080:8080 -v datacube:/data datacube serve --demo
#
# Every setting is a DATACUBE_… variable, as outside a container (`datacube serve --help`);
# DATACUBE_DATABASE=postgres://… puts the data in PostgreSQL instead (compose.yaml). The
# HEALTHCHECK asks the server's /readyz with `datacube healthcheck` (no curl in the image).
#
# Builds with docker (BuildKit) or podman/buildah; podman needs `--format docker` to keep the
# HEALTHCHECK (the OCI image format has no health check). `--build-arg DATACUBE_COMMIT=$(git
# rev-parse --short=12 HEAD)` puts the commit in `datacube --version`. `--target prebuilt` skips
# the compiler and packs a binary built elsewhere for Debian 12: `DATACUBE_BINARY` names it
# inside the build context (docker build -f Dockerfile --target prebuilt DIR, DIR holding
# `datacube`). RUST_IMAGE and BASE_IMAGE choose other images of the same Debian release (the
# binary links the base's glibc).

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The commit `datacube --version` shows (.git is not part of the build context).
ARG DATACUBE_COMMIT=unknown
# The target cache is shared by every build on the machine, whatever tree it came from: cargo
# judges freshness by modification times, so this tree's sources are made the newest (a build
# from another checkout, with older times but other contents, would otherwise be taken as this
# one's). The dependencies stay cached.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find crates -type f -exec touch {} + \
    && DATACUBE_COMMIT="${DATACUBE_COMMIT}" cargo build --release --locked --bin datacube \
    && install -D target/release/datacube /out/datacube

FROM ${BASE_IMAGE} AS base
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin datacube \
    && install -d -m 0750 -o datacube -g datacube /data
ENV DATACUBE_LISTEN=0.0.0.0:8080 \
    DATACUBE_DATABASE=sqlite:///data/datacube.db
WORKDIR /data
VOLUME /data
EXPOSE 8080
USER datacube
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["datacube", "healthcheck"]
ENTRYPOINT ["datacube"]
CMD ["serve"]

FROM base AS prebuilt
ARG DATACUBE_BINARY=datacube
COPY --chmod=0755 ${DATACUBE_BINARY} /usr/local/bin/datacube

# The default target: built from this repository's sources.
FROM base
COPY --from=build /out/datacube /usr/local/bin/datacube
