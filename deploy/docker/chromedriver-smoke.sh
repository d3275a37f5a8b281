#!/usr/bin/env bash
# Runs inside the bot image (images.sh copies it into a throwaway container): starts chromedriver,
# asks it over its HTTP API for a headless Chromium session, loads a page in it, reads the
# title back and closes the session. Bash alone (/dev/tcp): the image has no curl or Python.
# images.sh runs it in a private network namespace, so the fixed port meets nobody else's.
set -euo pipefail
port="${1:-9515}"
log=$(mktemp)
chromedriver --port="$port" >"$log" 2>&1 &
driver=$!
trap 'kill "$driver" 2>/dev/null || true; wait "$driver" 2>/dev/null || true' EXIT

# One HTTP/1.1 request; prints the response body, read by its Content-Length (chromedriver keeps
# the connection open whatever the request says). Every read gives up after 60 s.
http() {
    local method=$1 path=$2 body=${3:-} line len=0 reply=
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
        "$method" "$path" "$port" "${#body}" "$body" >&3
    while IFS= read -r -t 60 line <&3; do
        line=${line%$'\r'}
        [ -z "$line" ] && break
        if [[ ${line,,} == content-length:* ]]; then len=${line#*:}; len=${len// /}; fi
    done
    if [ "$len" -gt 0 ]; then IFS= read -r -t 60 -N "$len" reply <&3 || true; fi
    exec 3<&-
    printf '%s\n' "$reply"
}

# chromedriver is up when /status answers ready (bounded: 100 tries 0.1 s apart).
for _ in $(seq 100); do
    if status=$(http GET /status 2>/dev/null) && [[ $status == *'"ready":true'* ]]; then break; fi
    kill -0 "$driver" 2>/dev/null || { cat "$log" >&2; echo "chromedriver exited" >&2; exit 1; }
    sleep 0.1
done
[[ ${status:-} == *'"ready":true'* ]] || { cat "$log" >&2; echo "chromedriver never became ready" >&2; exit 1; }

caps='{"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{"binary":"/usr/bin/chromium","args":["--headless=new","--no-sandbox","--disable-dev-shm-usage","--disable-gpu","--user-data-dir=/tmp/smoke-profile"]}}}}'
created=$(http POST /session "$caps")
session=$(sed -n 's/.*"sessionId":"\([0-9a-f]*\)".*/\1/p' <<<"$created")
[ -n "$session" ] || { echo "no session: $created" >&2; cat "$log" >&2; exit 1; }
version=$(sed -n 's/.*"browserVersion":"\([0-9.]*\)".*/\1/p' <<<"$created")

http POST "/session/$session/url" '{"url":"data:text/html,<title>aap-smoke</title><p>ok</p>"}' >/dev/null
title=$(http GET "/session/$session/title")
http DELETE "/session/$session" >/dev/null
[[ $title == *'"value":"aap-smoke"'* ]] || { echo "unexpected title: $title" >&2; exit 1; }
echo "chromedriver started Chromium $version (session $session) and read the page title"
