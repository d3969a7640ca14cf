# One image with every binary; the chart picks one per component with `command`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p xinyong-cli -p xinyong-gateway -p xinyong-registry -p xinyong-ingestion \
      -p xinyong-grading -p xinyong-sanctions -p xinyong-lottery -p xinyong-objections -p xinyong-reports

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home xinyong
COPY --from=build /src/target/release/xinyong-* /usr/local/bin/
USER 10001
