#!/usr/bin/env bash
# Makes the Debian bookworm base image the Dockerfiles start from, without a container registry:
# `debootstrap --variant=minbase` from the Debian mirror into a rootfs, trimmed like
# debian:bookworm-slim (no docs, man pages or locales), imported with `buildah from scratch`.
#
#   deploy/docker/base-image.sh            # prints the image name; builds it only when missing
#
# CI and `just images` pass it to the Dockerfiles as `--build-arg BASE=<name>`; with a registry
# the Dockerfiles' default, debian:bookworm-slim, does the same job.
#
# Environment:
#   AAP_IMAGES_DIR   buildah's storage and this image's cache (default ~/.cache/aap/images)
#   DEBIAN_MIRROR    default http://deb.debian.org/debian
set -euo pipefail

AAP_IMAGES_DIR="${AAP_IMAGES_DIR:-$HOME/.cache/aap/images}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# Bump when what goes into the image changes: an image with another recipe is made again.
RECIPE=1
IMAGE="localhost/aap-debian:$SUITE"

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/docker/buildah.sh
source "$here/buildah.sh"

if [ "$(bah inspect --type image --format '{{index .ImageAnnotations "org.aap.recipe"}}' "$IMAGE" 2>/dev/null)" = "$RECIPE" ]; then
    echo "$IMAGE"
    exit 0
fi

command -v debootstrap >/dev/null || { echo "debootstrap is missing: bash deploy/local/install.sh --deploy" >&2; exit 1; }
rootfs="$AAP_IMAGES_DIR/rootfs.$$"
trap 'rm -rf "$rootfs"' EXIT
rm -rf "$rootfs"
echo "making $IMAGE: debootstrap $SUITE from $DEBIAN_MIRROR" >&2
if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$AAP_IMAGES_DIR/debootstrap.log" 2>&1; then
    tail -n 40 "$AAP_IMAGES_DIR/debootstrap.log" >&2
    exit 1
fi

# What debian:bookworm-slim does: keep docs, man pages and translations out of every package.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
: >"$rootfs/etc/machine-id"

c=$(bah from scratch)
mnt=$(bah mount "$c")
cp -a "$rootfs/." "$mnt/"
bah umount "$c" >/dev/null
bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --annotation "org.aap.recipe=$RECIPE" "$c"
bah commit --rm "$c" "$IMAGE" >&2
echo "$IMAGE"
