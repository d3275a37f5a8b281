#!/usr/bin/env bash
# The deployments' topology, run for real without containers: in a private network and mount
# namespace (so fixed ports and host names meet nobody else's), it starts PostgreSQL, the 3-node
# NATS JetStream cluster of deploy/compose/nats.conf, every service as its own `aap serve --services X` process on its own loopback address under
# its compose/Kubernetes host name (answers, sessions, evaluations, ...), the gateway (nginx with
# deploy/k8s/base/gateway/nginx.conf), the simulator, then deploy/compose/seed-accounts.sh and
# one real Chromium bot that reach the platform only through the gateway, as they do in compose
# and Kubernetes, with compose's settings (deploy/compose/aap.env: the three NATS servers, streams
# on 3 replicas, the tokens). It passes when a token is made through the gateway (AdminService)
# and a prompt asked through it is answered by the bot.
#
#   deploy/split-test.sh          # root (unshare); `just deploy-check` runs it
#
# Environment: AAP_BIN_DIR (default $CARGO_TARGET_DIR/debug), AAP_TOOLS_DIR (default /opt/aap).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "${AAP_SPLIT_TEST_INNER:-}" != 1 ]; then
    exec env AAP_SPLIT_TEST_INNER=1 unshare --net --mount --fork bash "$0" "$@"
fi

AAP_TOOLS_DIR="${AAP_TOOLS_DIR:-/opt/aap}"
AAP_BIN_DIR="${AAP_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/aap/target}/debug}"
aap="$AAP_BIN_DIR/aap"
for bin in "$aap" "$AAP_BIN_DIR/aap-bot" "$AAP_TOOLS_DIR/bin/nats-server" "$AAP_TOOLS_DIR/pgsql/bin/postgres"; do
    [ -x "$bin" ] || { echo "error: $bin is missing (cargo build -p aap -p aap-bot; deploy/local/install.sh)" >&2; exit 1; }
done
command -v nginx >/dev/null || { echo "error: nginx is missing: bash deploy/local/install.sh --deploy" >&2; exit 1; }
command -v ip >/dev/null || { echo "error: ip (iproute2) is missing: bash deploy/local/install.sh --deploy" >&2; exit 1; }

work=$(mktemp -d /tmp/aap-split.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
    # Last started first: the bot returns its session while the services still run.
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[$i]}" 2>/dev/null || true
        wait "${pids[$i]}" 2>/dev/null || true
    done
    [ -f "$work/nginx-nginx.pid" ] && kill "$(cat "$work/nginx-nginx.pid")" 2>/dev/null || true
    LD_LIBRARY_PATH="$AAP_TOOLS_DIR/pgsql/lib" runuser -u aap -- "$AAP_TOOLS_DIR/pgsql/bin/pg_ctl" -D "$work/pg" stop -m fast >/dev/null 2>&1 || true
    [ -n "${AAP_SPLIT_TEST_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for log in "$work"/*.log; do echo "--- $log" >&2; tail -n 15 "$log" >&2; done
    exit 1
}
# Waits (bounded: 60 s) until the command succeeds.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 120); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    fail "$what did not come up"
}

ip link set lo up
# The Services' names: one loopback address per service, each on the ports it has in a pod.
cat >"$work/hosts" <<'EOF'
127.0.0.1 localhost postgres
127.0.0.2 answers
127.0.0.3 sessions
127.0.0.4 evaluations
127.0.0.5 scheduler
127.0.0.6 ingest
127.0.0.7 console
127.0.0.8 gateway
127.0.0.11 nats-1
127.0.0.12 nats-2
127.0.0.13 nats-3
EOF
mount --bind "$work/hosts" /etc/hosts

echo "==> PostgreSQL, NATS (3 servers, deploy/compose/nats.conf)"
install -d -o aap "$work/pg"
install -o aap /dev/null "$work/postgres.log"
export LD_LIBRARY_PATH="$AAP_TOOLS_DIR/pgsql/lib"
runuser -u aap -- "$AAP_TOOLS_DIR/pgsql/bin/initdb" -D "$work/pg" -U aap --auth=trust >"$work/initdb.log" 2>&1 || fail "initdb"
runuser -u aap -- "$AAP_TOOLS_DIR/pgsql/bin/pg_ctl" -D "$work/pg" -l "$work/postgres.log" -w \
    -o "-p 5432 -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null || fail "postgres"
runuser -u aap -- "$AAP_TOOLS_DIR/pgsql/bin/createdb" -h 127.0.0.1 -U aap aap || fail "createdb"
unset LD_LIBRARY_PATH
# compose.yaml's command for each node, plus the address and the store that a container has alone.
for n in 1 2 3; do
    sed "s|store_dir: /data|store_dir: $work/nats-$n|" deploy/compose/nats.conf >"$work/nats-$n.conf"
    "$AAP_TOOLS_DIR/bin/nats-server" -c "$work/nats-$n.conf" --name "nats-$n" -a "127.0.0.1$n" \
        --cluster_listen "nats://127.0.0.1$n:6222" >"$work/nats-$n.log" 2>&1 &
    pids+=($!)
done
for n in 1 2 3; do
    wait_for "nats-$n's JetStream" bash -c "exec 3<>/dev/tcp/127.0.0.1$n/8222 && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && grep -q '\"ok\"' <&3"
done
# The cluster has elected its JetStream meta leader: only then can streams of 3 replicas be made
# (a service started earlier exits, and compose or Kubernetes would restart it).
wait_for "the JetStream meta leader" bash -c "exec 3<>/dev/tcp/127.0.0.11/8222 && printf 'GET /jsz HTTP/1.0\r\n\r\n' >&3 && grep -q '\"leader\": *\"nats-' <&3"

# compose's settings (aap.env), but for the session key's path and the logs.
set -a
# shellcheck source=deploy/compose/aap.env
source deploy/compose/aap.env
set +a
export AAP_SESSION_KEY_FILE="$repo/deploy/compose/session.key" RUST_LOG=warn
export AAP_MODEL_DIR="${AAP_MODEL_DIR:-$AAP_TOOLS_DIR/models/all-MiniLM-L6-v2}"
operator=${AAP_OPERATOR_TOKENS#*=} bot=${AAP_BOT_TOKENS#*=}

echo "==> one process per service"
for service in answers sessions evaluations scheduler ingest console; do
    address=$(awk -v s="$service" '$2 == s { print $1 }' "$work/hosts")
    AAP_SERVICES=$service AAP_GRPC_ADDR=$address:50051 AAP_HTTP_ADDR=$address:8000 \
        AAP_CONSOLE_ADDR=$address:8080 AAP_METRICS_ADDR=$address:9464 \
        "$aap" serve >"$work/$service.log" 2>&1 &
    pids+=($!)
done

echo "==> gateway (nginx, deploy/k8s/base/gateway/nginx.conf)"
# Listening on the gateway's own address, as it has its own in a pod; the routes are the file's.
sed -e 's/listen 50051 http2;/listen 127.0.0.8:50051 http2;/' -e 's/listen 8081;/listen 127.0.0.8:8081;/' \
    -e "s|/tmp/|$work/nginx-|g" \
    deploy/k8s/base/gateway/nginx.conf >"$work/nginx.conf"
nginx -t -q -c "$work/nginx.conf" -e "$work/nginx-error.log" || fail "nginx -t"
nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" || fail "nginx"
wait_for "the gateway" bash -c 'exec 3<>/dev/tcp/127.0.0.8/8081'

echo "==> the simulator, its accounts (deploy/compose/seed-accounts.sh)"
"$aap" simulator --addr 127.0.0.1:8100 >"$work/simulator.log" 2>&1 &
pids+=($!)
export AAP_SERVER=http://gateway:50051
token=$(AAP_OPERATOR_TOKEN=$operator timeout 120 bash -c \
    'until "$0" token create --principal split-acme --role customer 2>/dev/null; do sleep 0.5; done' "$aap") ||
    fail "aap token create through the gateway"
[ -n "$token" ] || fail "no token"
echo "    a customer token made through the gateway (AdminService on answers)"
AAP_OPERATOR_TOKEN=$operator PATH="$AAP_BIN_DIR:$PATH" timeout 180 \
    bash deploy/compose/seed-accounts.sh >"$work/seed.log" 2>&1 || fail "seed-accounts.sh"
tail -n 1 "$work/seed.log" | sed 's/^/    /'

echo "==> a bot through the gateway, a prompt through the gateway"
AAP_BOT_GRPC_URL=http://gateway:50051 AAP_BOT_TOKEN=$bot AAP_BOT_BOT_ID=split-chatgpt-1 \
    AAP_BOT_ASSISTANT_NAME=chatgpt AAP_BOT_PLAN_NAME=Plus AAP_BOT_ASSISTANT_URL=http://127.0.0.1:8100 \
    AAP_BOT_HEADFUL=false AAP_BOT_EVIDENCE_DIR="$work/evidence" AAP_BOT_METRICS_ADDR=127.0.0.9:9464 \
    "$AAP_BIN_DIR/aap-bot" >"$work/bot.log" 2>&1 &
pids+=($!)
timeout 90 "$aap" ask --token "$token" -t chatgpt:Plus "Which CRM is best for a five-person startup?" \
    >"$work/ask.log" 2>&1 || fail "aap ask through the gateway"
grep -q "1 answered, 0 failed" "$work/ask.log" || fail "the prompt was not answered: $(tail -n 3 "$work/ask.log")"
tail -n 1 "$work/ask.log" | sed 's/^/    /'
# The platform made its streams on all three servers (AAP_NATS_STREAM_REPLICAS=3 in aap.env).
exec 3<>/dev/tcp/127.0.0.11/8222
printf 'GET /jsz?streams=true HTTP/1.0\r\n\r\n' >&3
jsz=$(cat <&3)
exec 3<&-
for stream in AAP_TASKS AAP_RESULTS AAP_RESULT_BATCHES; do
    # No match is a count of 0 (grep's failure would end the script silently under pipefail).
    replicas=$( (tr -d ' \n' <<<"$jsz" | grep -o "\"name\":\"$stream\"[^]]*\"replicas\":\[[^]]*\]" |
        grep -o '"name":"nats-[0-9]"' || true) | wc -l)
    [ "$replicas" -ge 2 ] || fail "stream $stream has $replicas replicas besides its leader, not 2"
done
echo "    streams AAP_TASKS, AAP_RESULTS and AAP_RESULT_BATCHES on 3 servers"
echo "split platform through the gateway: token, accounts, bot, answer, 3 stream replicas ok"
