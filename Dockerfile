# The sluice binary in a small image. Build: docker build -t sluice .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY pipelines /pipelines
COPY examples /examples
COPY data /data
# Checkpoints of every job go to $XDG_DATA_HOME/sluice/checkpoints/<job>: mount a volume here.
ENV XDG_DATA_HOME=/var/lib/sluice
VOLUME /var/lib/sluice
ENTRYPOINT ["sluice"]
CMD ["--help"]
