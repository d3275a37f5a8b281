#!/usr/bin/env bash
# One-shot of compose.yaml: gives the platform two simulator accounts per assistant, so the two
# bots of each assistant have sessions to lease. It runs in the simulator's network namespace
# (like the bots), where the simulator's sites are http://127.0.0.1:8100..8103: the cookies of a
# session it makes are for that origin, which is the one the bots open. Bash alone (/dev/tcp):
# the image has no curl or Python.
set -euo pipefail
sites=(chatgpt claude perplexity google-ai-overview)
plans=(Plus Pro Pro Free)
dir=$(mktemp -d)

# POST /__sim/sessions on the simulator at 127.0.0.1:$1 with {"label": $2}; prints the reply body.
create_session() {
    local port=$1 body="{\"label\":\"$2\"}" line len=0 reply=
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'POST /__sim/sessions HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
        "$port" "${#body}" "$body" >&3
    while IFS= read -r -t 30 line <&3; do
        line=${line%$'\r'}
        [ -z "$line" ] && break
        if [[ ${line,,} == content-length:* ]]; then len=${line#*:}; len=${len// /}; fi
    done
    if [ "$len" -gt 0 ]; then IFS= read -r -t 30 -N "$len" reply <&3 || true; fi
    exec 3<&-
    printf '%s' "$reply"
}

# The simulator and the platform start with the others: wait (bounded) for both.
for _ in $(seq 120); do
    if (exec 3<>/dev/tcp/127.0.0.1/8100) 2>/dev/null && aap accounts list >/dev/null 2>&1; then break; fi
    sleep 1
done

for i in "${!sites[@]}"; do
    site=${sites[$i]}
    mkdir -p "$dir/$site"
    for n in 1 2; do
        reply=$(create_session $((8100 + i)) "compose-$n")
        # The reply's storage_state_json is a JSON string: unescape it into the session file.
        state=$(sed -e 's/.*"storage_state_json":"\(.*\)"[,}].*/\1/' -e 's/\\"/"/g' -e 's/\\\\/\\/g' <<<"$reply")
        [[ $state == '{'* ]] || { echo "no session from the $site simulator: $reply" >&2; exit 1; }
        printf '%s\n' "$state" >"$dir/$site/simulator-$n.json"
    done
    # --replace: the simulator forgets its sessions when it restarts; the accounts get new ones.
    aap session import "$dir/$site" --assistant "$site" --plan "${plans[$i]}" --replace
done
echo "simulator accounts imported"
