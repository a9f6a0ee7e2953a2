#!/usr/bin/env bash
# Lays out the container image's root file system in DIR from a built `aetherv` binary: the
# binary (stripped), exactly the shared libraries it loads (ldd: glibc, libgcc, and with the
# `kerberos` feature MIT GSSAPI and its dependencies), the CA bundle for TLS to chat APIs and
# RabbitMQ, and passwd/group entries for the unprivileged user 10001. Nothing else: no shell,
# no package manager. Used by the Containerfile's build stage and by scripts/image.sh.
set -euo pipefail
bin=${1:?usage: image-rootfs.sh BINARY DIR}
out=${2:?usage: image-rootfs.sh BINARY DIR}
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/tmp" "$out/data"
install -m 0755 "$bin" "$out/usr/local/bin/aetherv"
strip --strip-unneeded "$out/usr/local/bin/aetherv" 2>/dev/null || true
# A file or folder at its own path under $out (links followed).
put() { mkdir -p "$out$(dirname "$1")"; cp -rL "$1" "$out$(dirname "$1")/"; }
# Every library the dynamic loader resolves, and the loader itself, at their own paths.
ldd "$bin" | awk '/=> \// {print $3} /^\s*\/.*ld-linux/ {print $1}' | sort -u | while read -r lib; do
  put "$lib"
done
# MIT Kerberos loads its plugins (and reads /etc/krb5.conf, mounted at run time) by itself.
if ldd "$bin" | grep -q gssapi_krb5; then
  for d in /usr/lib/x86_64-linux-gnu/krb5; do if [ -d "$d" ]; then put "$d"; fi; done
fi
cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
printf 'aetherv:x:10001:10001:aetherv:/data:/nonexistent\n' > "$out/etc/passwd"
printf 'aetherv:x:10001:\n' > "$out/etc/group"
chmod 1777 "$out/tmp"
chown 10001:10001 "$out/data" 2>/dev/null || true
