# syntax=docker/dockerfile:1.7
#
# The three images, one build: `docker build --target lagrate .`,
# `--target trade-tx-consumer`, `--target trade-tx-producer`.
# The runtime is distroless cc-debian12 (glibc, libgcc, OpenSSL 3, CA
# certificates; no shell, no package manager), running as its nonroot user
# (65532). The build image is Debian 12 too, so the binaries find the same
# glibc and libssl3 they were linked against; zlib, which distroless lacks,
# is linked statically.
#
# Base images are pinned by digest; refresh a digest with
# `docker buildx imagetools inspect IMAGE:TAG` and change tag and digest together.

FROM docker.io/library/rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build

# librdkafka is built from source by rdkafka (make + a C/C++ compiler);
# libssl-dev for MSK's TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make perl pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*

ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never

WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p lagrate -p trade-consumer -p trade-producer \
    && mkdir -p /out \
    && cp target/release/lagrate target/release/trade-consumer target/release/trade-producer /out/

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f AS runtime
USER 65532:65532

FROM runtime AS lagrate
COPY --from=build /out/lagrate /usr/local/bin/lagrate
EXPOSE 9090 8080
ENTRYPOINT ["/usr/local/bin/lagrate"]
CMD ["serve", "--config", "/etc/lagrate/config.yaml"]

FROM runtime AS trade-tx-consumer
COPY --from=build /out/trade-consumer /usr/local/bin/trade-consumer
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/trade-consumer"]

FROM runtime AS trade-tx-producer
COPY --from=build /out/trade-producer /usr/local/bin/trade-producer
EXPOSE 8001
ENTRYPOINT ["/usr/local/bin/trade-producer"]
