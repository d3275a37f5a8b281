# The bot image: aap-bot with Chromium, chromedriver and Xvfb, run headful the way the seed runs
# its Playwright bot (headful under Xvfb gets through bot checks that headless does not), as a
# non-root user. It also holds `aap`, for the one service that drives a browser itself: the
# console's remote logins (`aap serve --services sessions`).
#
# From source (needs a registry for the rust, node and debian images):
#
#   docker build -f deploy/docker/bot.Dockerfile -t aap-bot .
#   docker run --rm --init --shm-size=2gb \
#     -v $(pwd)/sessions:/app/sessions:ro -v $(pwd)/evidence:/app/evidence \
#     aap-bot --sessions-dir /app/sessions --api-url http://backend:8000 \
#             --results-api-url http://backend:8000 --assistant-name ChatGPT --plan-name Plus \
#             --max-attempts 3 --per-session-runs 10 --poll-retry-seconds 10 --idle-timeout-minutes 30
#
# From binaries already built (CI, `just images`; deploy/docker/images.sh): the build context is a
# directory holding `aap-bot` and `aap`, BASE a Debian bookworm image made without a registry:
#
#   buildah bud --target prebuilt --build-arg BASE=localhost/aap-debian:bookworm \
#     -f deploy/docker/bot.Dockerfile -t aap-bot <dir>
#
# Every flag of the seed's bot works as it did; `--grpc-url` + `--token` take tasks and sessions
# from the platform instead. `docker stop` sends SIGTERM: the bot finishes (or hands back) the
# task in hand, returns its session and quits its browser and Xvfb.

ARG BASE=debian:bookworm-slim
ARG RUST=rust:1-bookworm
ARG NODE=node:20-bookworm

# --- build stage (from source) ------------------------------------------------------------------
FROM ${NODE} AS node

FROM ${RUST} AS build
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
WORKDIR /src
COPY . .
ENV AAP_CONSOLE_REQUIRED=1
# The bot and `aap` (for the sessions service's remote logins); protoc comes vendored.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cd console && npm ci --no-audit --no-fund && cd .. \
    && cargo build --release --locked -p aap-bot --bin aap-bot -p aap --bin aap \
    && install -D -m 0755 target/release/aap-bot /out/aap-bot \
    && install -D -m 0755 target/release/aap /out/aap

# --- runtime ------------------------------------------------------------------------------------
FROM ${BASE} AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        chromium chromium-driver xvfb xauth fonts-liberation fonts-noto-color-emoji ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 bot \
    && useradd --create-home --uid 10001 --gid 10001 bot \
    && mkdir -p /app/sessions /app/evidence /app/logs \
    && chown -R bot:bot /app
USER 10001:10001
WORKDIR /app
# Headful: the bot starts its own Xvfb display when $DISPLAY is unset. Metrics on 9464.
ENV AAP_BOT_HEADFUL=true \
    AAP_BOT_CHROMIUM=/usr/bin/chromium \
    AAP_BOT_CHROMEDRIVER=/usr/bin/chromedriver \
    AAP_BOT_EVIDENCE_DIR=/app/evidence \
    AAP_BOT_METRICS_ADDR=0.0.0.0:9464
EXPOSE 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "aap-bot"]
CMD ["--help"]

# Binaries built outside (the build context is a directory with aap-bot and aap).
FROM runtime AS prebuilt
COPY aap-bot aap /usr/local/bin/

# The default target: from source.
FROM runtime AS source
COPY --from=build /out/aap-bot /out/aap /usr/local/bin/
