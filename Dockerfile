# Builds the Chronik image from source, for machines that can pull base images and reach crates.io from
# inside a build. It makes the same image as docker/Dockerfile (the same paths, user and environment),
# so docker-compose.yml runs either:
#   docker build -t chronik:local .
#   docker compose up -d            # without --build: uses chronik:local
# Without a registry use `scripts/docker-up`, which builds on the host and needs no base image.
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins -p chronik-controller -p chronik-broker -p chronikctl \
 && mkdir -p /out/bin /out/data /out/secrets \
 && cp target/release/chronik-controller target/release/chronik-broker target/release/chronikctl /out/bin/

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=10001:10001 /out/data/ /var/lib/chronik/
# The mount point of docker-compose.secure.yml's secrets volume, which takes this owner.
COPY --from=build --chown=10001:10001 /out/secrets/ /etc/chronik/secrets/
ENV CHRONIK_DATA_DIR=/var/lib/chronik \
    RUST_LOG=info
USER 10001:10001
WORKDIR /var/lib/chronik
EXPOSE 9092 19092 9093 8092 8093
CMD ["chronikctl", "--help"]
