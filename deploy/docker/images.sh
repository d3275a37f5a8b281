#!/usr/bin/env bash
# Builds the platform and bot images from binaries already built, then smoke-runs them:
# `aap --version` in the platform image (as its non-root user, with the model in place),
# `aap-bot --help` and `aap --version` in the bot image, and chromedriver starting Chromium there
# (deploy/docker/chromedriver-smoke.sh, in a private network namespace). `just images` runs it;
# so does CI.
#
# No registry is needed: the base is made with debootstrap (deploy/docker/base-image.sh), the
# binaries and the model are packaged by the Dockerfiles' `prebuilt` stage. Everything is cached
# under AAP_IMAGES_DIR, so a repeat run rebuilds only the layers whose binaries changed.
#
# Environment:
#   AAP_BIN_DIR      where aap and aap-bot are (default $CARGO_TARGET_DIR/debug); debug symbols
#                    are stripped on the way into the image
#   AAP_MODEL_DIR    all-MiniLM-L6-v2 (default $AAP_TOOLS_DIR/models/all-MiniLM-L6-v2)
#   AAP_IMAGE_TAG    tag of both images (default dev): localhost/aap:TAG, localhost/aap-bot:TAG
#   AAP_IMAGES_DIR   buildah's storage and the build context (default ~/.cache/aap/images)
set -euo pipefail
cd "$(dirname "$0")/../.."

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aap/target}"
AAP_BIN_DIR="${AAP_BIN_DIR:-$CARGO_TARGET_DIR/debug}"
AAP_MODEL_DIR="${AAP_MODEL_DIR:-${AAP_TOOLS_DIR:-/opt/aap}/models/all-MiniLM-L6-v2}"
AAP_IMAGE_TAG="${AAP_IMAGE_TAG:-dev}"
# shellcheck source=deploy/docker/buildah.sh
source deploy/docker/buildah.sh

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
for bin in aap aap-bot; do
    [ -x "$AAP_BIN_DIR/$bin" ] || die "$AAP_BIN_DIR/$bin is missing: cargo build -p aap -p aap-bot (or set AAP_BIN_DIR)"
done
[ -f "$AAP_MODEL_DIR/model.safetensors" ] || die "no model in $AAP_MODEL_DIR: bash deploy/local/install.sh"
command -v buildah >/dev/null || die "buildah is missing: bash deploy/local/install.sh --deploy"
command -v strip >/dev/null || die "strip (binutils) is missing: bash deploy/local/install.sh --deploy"
command -v ip >/dev/null || die "ip (iproute2) is missing: bash deploy/local/install.sh --deploy"

started=$(date +%s)
say "base image"
base=$(bash deploy/docker/base-image.sh)
echo "    $base"

say "build context $AAP_IMAGES_DIR/context (binaries from $AAP_BIN_DIR)"
ctx="$AAP_IMAGES_DIR/context"
mkdir -p "$ctx"
for bin in aap aap-bot; do
    strip --strip-debug -o "$ctx/$bin.new" "$AAP_BIN_DIR/$bin"
    mv "$ctx/$bin.new" "$ctx/$bin"
done
rm -rf "$ctx/all-MiniLM-L6-v2"
cp -a "$AAP_MODEL_DIR" "$ctx/all-MiniLM-L6-v2"
rm -f "$ctx/all-MiniLM-L6-v2/.aap-source"

# Builds one image; drops the image the tag held before (its layers stay while cached steps use
# them), so repeated runs do not pile up copies of the binaries.
build() {
    local dockerfile=$1 image=$2 old t0
    old=$(bah inspect --type image --format '{{.FromImageID}}' "$image" 2>/dev/null || true)
    t0=$(date +%s)
    bah bud --isolation chroot --layers --quiet --target prebuilt --build-arg "BASE=$base" \
        -f "$dockerfile" -t "$image" "$ctx" >/dev/null
    local new
    new=$(bah inspect --type image --format '{{.FromImageID}}' "$image")
    if [ -n "$old" ] && [ "$old" != "$new" ]; then bah rmi "$old" >/dev/null 2>&1 || true; fi
    echo "    $image built in $(( $(date +%s) - t0 ))s"
}
say "images"
build deploy/docker/platform.Dockerfile "localhost/aap:$AAP_IMAGE_TAG"
build deploy/docker/bot.Dockerfile "localhost/aap-bot:$AAP_IMAGE_TAG"
built=$(date +%s)

say "smoke: platform image"
c=$(bah from "localhost/aap:$AAP_IMAGE_TAG")
trap 'bah rm "$c" >/dev/null 2>&1 || true' EXIT
memfd_retry bah run --isolation chroot "$c" -- aap --version
memfd_retry bah run --isolation chroot "$c" -- sh -c 'test "$(id -u)" != 0 && test -r "$AAP_MODEL_DIR/model.safetensors" && echo "runs as $(id -un) ($(id -u)), model in $AAP_MODEL_DIR"'
bah rm "$c" >/dev/null

say "smoke: bot image"
c=$(bah from "localhost/aap-bot:$AAP_IMAGE_TAG")
memfd_retry bah run --isolation chroot "$c" -- sh -c 'aap-bot --help >/tmp/help && head -n 1 /tmp/help && aap --version && test "$(id -u)" != 0 && echo "runs as $(id -un) ($(id -u))"'
bah copy --chmod 0755 "$c" deploy/docker/chromedriver-smoke.sh /tmp/chromedriver-smoke.sh >/dev/null
# chroot isolation shares the host's network: a fresh network namespace keeps chromedriver's
# port private to this check.
memfd_retry unshare --net bash -c 'ip link set lo up && "$@"' _ \
    buildah --root "$AAP_IMAGES_DIR/storage-$AAP_STORAGE_DRIVER" --runroot "$AAP_IMAGES_DIR/run-$AAP_STORAGE_DRIVER" --storage-driver "$AAP_STORAGE_DRIVER" \
    run --isolation chroot "$c" -- bash /tmp/chromedriver-smoke.sh 9515
bah rm "$c" >/dev/null
trap - EXIT

say "sizes"
bah images --format '    {{.Name}}:{{.Tag}} {{.Size}}' | grep -E "/aap(-bot)?:$AAP_IMAGE_TAG |aap-debian" || true
say "images built in $(( built - started ))s, smoke-tested in $(( $(date +%s) - built ))s"
