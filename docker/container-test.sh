#!/usr/bin/env bash
# make container-test: prove the image works on a machine without a Docker engine.
#   1. a Debian bookworm root filesystem from debootstrap (cached), imported as a local base image;
#   2. the CPU image built from docker/Dockerfile on that base with podman --isolation=chroot
#      (podman keeps its layer cache; pip's wheel cache is a mounted host folder);
#   3. inside the image (buildah run --isolation chroot, as the image's non-root user):
#      one short demo training epoch, the batch evaluation, and the benchmark suite as tests.
# Needs root on Debian/Ubuntu (podman, buildah and debootstrap are apt-installed when missing) and
# network access to the Debian mirror and PyPI on a cold run only.
# The CUDA image's GPU path is not exercised here (no GPU and no Docker engine on these machines).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${TAGFOLD_CACHE:-/var/cache/tagfold}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SHARED=$(realpath "${SHARED_DATA:-../shared/data}")
BASE_IMAGE=localhost/tagfold-base:bookworm
IMAGE=${IMAGE:-localhost/tagfold:cpu-test}
ROOTFS=$CACHE/rootfs-bookworm
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
# Everything the Dockerfile would otherwise apt-get, so the build needs no apt network access.
PACKAGES=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates

say() { printf '\n== container-test: %s\n' "$*" >&2; }
die() { printf 'container-test: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot builds); run it as root or with sudo"
missing=$(for tool in podman buildah debootstrap; do command -v "$tool" >/dev/null || echo "$tool"; done)
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || die "needs podman, buildah and debootstrap (missing: $missing)"
  say "installing $missing"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah debootstrap
fi
[ -d "$SHARED" ] || die "shared data not found at $SHARED (set SHARED_DATA=...)"
mkdir -p "$CACHE/pip"

start=$SECONDS
timings=()
current=""
step() {  # step NAME CMD...: run it (under set -e) and record how long it took
  current=$1; local t0=$SECONDS; shift
  say "$current"
  "$@"
  timings+=("$(printf '%-28s %5ds' "$current" $((SECONDS - t0)))")
  current=""
}
summary() {
  local status=$?
  [ -z "$current" ] || timings+=("$(printf '%-28s %5s  FAILED' "$current" -)")
  say "$([ "$status" -eq 0 ] && echo passed || echo FAILED) after $((SECONDS - start)) s"
  printf '  %s\n' "${timings[@]}" >&2
}

make_base() {
  if podman image exists "$BASE_IMAGE"; then echo "base image $BASE_IMAGE cached"; return; fi
  if [ ! -f "$ROOTFS/.complete" ]; then
    rm -rf "$ROOTFS.tmp"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS.tmp" "$MIRROR"
    # Keep the image small: apt lists and caches are not needed in it.
    rm -rf "$ROOTFS.tmp"/var/cache/apt/archives/*.deb "$ROOTFS.tmp"/var/lib/apt/lists/*
    rm -rf "$ROOTFS" && mv "$ROOTFS.tmp" "$ROOTFS" && touch "$ROOTFS/.complete"
  fi
  tar --exclude=./.complete -C "$ROOTFS" -c . | podman import - "$BASE_IMAGE"
}

build_image() {
  # The pip cache mount makes a rebuild after a requirements change download only what changed;
  # the host's CA bundle lets pip through a TLS-inspecting proxy (the Dockerfile's PIP_CERT).
  podman build --isolation=chroot --layers --force-rm \
    --build-arg BASE="$BASE_IMAGE" \
    --volume "$CACHE/pip:/root/.cache/pip" \
    --volume "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro" \
    -f docker/Dockerfile -t "$IMAGE" .
}

trap summary EXIT
step "base image" make_base
step "build CPU image" build_image

ctr=$(buildah from --pull-never "$IMAGE")
work=$(mktemp -d /tmp/tagfold-container-test.XXXXXX)
trap 'summary; buildah rm "$ctr" >/dev/null; rm -rf "$work"' EXIT
chmod 0777 "$work"   # written by the image's non-root user

# buildah run does not apply ENTRYPOINT, so call the entry script explicitly: that tests it too.
in_image() {
  buildah run --isolation chroot \
    -v "$work:/out" -v "$SHARED:/shared:ro" \
    "$ctr" -- tagfold-entrypoint "$@"
}
step "whoami (non-root)" bash -c "[ \"\$(buildah run --isolation chroot $ctr -- id -u)\" != 0 ]"
step "benchmarks as tests" in_image test benchmarks
step "train 1 epoch (demo data)" in_image train --epochs 1 --out /out/train
step "evaluate" in_image evaluate --checkpoint /out/train/best.pt --out /out/eval
