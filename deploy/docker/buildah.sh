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
