#!/usr/bin/env bash
# Builds the aetherv image with buildah FROM scratch, pulling nothing: the root file system
# comes from a binary built here (scripts/image-rootfs.sh), then the image's own binary is
# started with --version from the image's file system, as user 10001. Prints the image size.
#   scripts/image.sh [BINARY] [TAG]     (default: target/release/aetherv, localhost/aetherv:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/aetherv}
tag=${2:-localhost/aetherv:dev}
if ! command -v buildah >/dev/null 2>&1; then
  echo "installing buildah (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq buildah
fi
ctx=$(mktemp -d)
store=${AETHERV_IMAGE_STORE:-$ctx/storage}
ba() { buildah --root "$store" --runroot "$ctx/run" --storage-driver vfs "$@"; }
cleanup() { ba rm --all >/dev/null 2>&1 || true; ba rmi --all --force >/dev/null 2>&1 || true; rm -rf "$ctx"; }
trap cleanup EXIT
scripts/image-rootfs.sh "$bin" "$ctx/rootfs"
# The final stage of the Containerfile, with the root file system from this machine.
sed -n '/^FROM scratch/,$p' Containerfile | sed 's#^COPY --from=build /rootfs/ /#COPY rootfs/ /#' > "$ctx/Containerfile"
ba bud --isolation chroot --layers=false -f "$ctx/Containerfile" -t "$tag" "$ctx" >/dev/null
ctr=$(ba from "$tag")
mnt=$(ba mount "$ctr")
version=$(chroot --userspec=10001:10001 "$mnt" /usr/local/bin/aetherv --version)
ba umount "$ctr" >/dev/null
size=$(ba inspect --type image --format '{{.Docker.Size}}' "$tag" 2>/dev/null || true)
[ -n "$size" ] && [ "$size" != "0" ] || size=$(du -sb "$ctx/rootfs" | cut -f1)
user=$(ba inspect --type image --format '{{.OCIv1.Config.User}}' "$tag")
echo "image $tag: $version, user $user, $((size / 1024 / 1024)) MiB"
[ "$user" = "10001:10001" ] || { echo "the image must run as 10001:10001" >&2; exit 1; }
case "$version" in aetherv\ *) ;; *) echo "the image's binary did not start" >&2; exit 1 ;; esac
