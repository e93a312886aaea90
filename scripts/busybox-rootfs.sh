#!/bin/sh
# Write a minimal busybox root filesystem as a tar stream on stdout, made from Debian's
# busybox-static (no registry needed).  Usage: scripts/busybox-rootfs.sh > busybox.tar
set -eu
BB=${BUSYBOX:-/bin/busybox}
[ -x "$BB" ] || { echo "busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/bin" "$d/etc" "$d/root" "$d/tmp" "$d/var/www" "$d/proc" "$d/sys" "$d/dev" "$d/home" "$d/usr/bin" "$d/usr/sbin" "$d/sbin"
chmod 1777 "$d/tmp"
chmod 700 "$d/root"
cp "$BB" "$d/bin/busybox"
for a in $("$BB" --list); do
  [ "$a" = busybox ] || ln -s busybox "$d/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$d/etc/passwd"
printf 'root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n' > "$d/etc/group"
echo '<h1>Welcome to kran!</h1>' > "$d/var/www/index.html"
tar --numeric-owner --owner=0 --group=0 --mtime='2024-01-01 00:00:00Z' --sort=name -C "$d" -cf - .
