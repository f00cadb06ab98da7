# Custos: multi-stage build, small non-root runtime image.
#   docker build -t custos .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin custos --bin demo-ephi

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home custos \
    && mkdir -p /var/lib/custos/audit && chown -R 10001 /var/lib/custos
COPY --from=build /src/target/release/custos /usr/local/bin/custos
COPY --from=build /src/target/release/demo-ephi /usr/local/bin/demo-ephi
USER 10001
EXPOSE 8080 8443 9090
ENTRYPOINT []
CMD ["custos", "--help"]
