# Sourced by the image scripts: `bah` is buildah with this project's storage under AAP_IMAGES_DIR
# (nothing lands in the system's container storage, and a repeat run reuses every cached layer)
# and chroot isolation (no daemon, no user namespaces needed). The overlay driver shares layers
# between containers; vfs (AAP_STORAGE_DRIVER=vfs) works anywhere but copies the whole root
# file system for every container and step, several times slower.
AAP_IMAGES_DIR="${AAP_IMAGES_DIR:-$HOME/.cache/aap/images}"
AAP_STORAGE_DRIVER="${AAP_STORAGE_DRIVER:-overlay}"
mkdir -p "$AAP_IMAGES_DIR/storage-$AAP_STORAGE_DRIVER"
bah() {
    buildah --root "$AAP_IMAGES_DIR/storage-$AAP_STORAGE_DRIVER" --runroot "$AAP_IMAGES_DIR/run-$AAP_STORAGE_DRIVER" \
        --storage-driver "$AAP_STORAGE_DRIVER" "$@"
}

# `buildah run` first copies its own binary into a sealed memfd (runc's guard against a
# container overwriting it), and the kernel refuses the seal with EBUSY while pages of that copy
# are still pinned: rarely, for a moment ("Close_Fd sealing memfd copy: Device or resource
# busy", once in CI on 2026-12-05, three runs right after it passed). Runs "$@" again on that
# error alone, at most three times in all; any other failure is returned at once.
memfd_retry() {
    local err rc try
    err=$(mktemp)
    for try in 1 2 3; do
        rc=0
        "$@" 2>"$err" || rc=$?
        cat "$err" >&2
        if [ "$rc" = 0 ] || ! grep -q "sealing memfd copy" "$err"; then
            break
        fi
        echo "    buildah could not seal its copy of itself (EBUSY, transient): run $try of 3 failed" >&2
        sleep 1
    done
    rm -f "$err"
    return "$rc"
}
