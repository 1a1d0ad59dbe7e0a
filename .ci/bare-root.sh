# Shared by .ci/clean-root and .ci/fresh-build (sourced, not run): a bare Debian 12 root made
# with debootstrap, this machine's Node added to it, and commands run inside it with chroot.
# Needs root and deb.debian.org.

# The package names of one or more lists (.ci/debian-*.txt): comments and blank lines dropped.
debian_packages() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$@" | grep -v '^$' | tr '\n' ' '
}

# Prints "<label>: <what> in N s" after running the rest of the line.
timed() {
  local label=$1 what=$2 t0=$SECONDS
  shift 2
  "$@"
  echo "$label: $what in $((SECONDS - t0)) s"
}

# bare_root_create ROOT LOG: Debian 12 minbase (glibc, libstdc++, libgcc; no compiler, no
# -dev package) into ROOT; on failure the tail of LOG is printed.
bare_root_create() {
  local root=$1 log=$2
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$log" 2>&1 \
    || { tail -20 "$log"; return 1; }
}

# bare_root_add_node ROOT [full]: this machine's node binary into ROOT/usr/local/bin. With
# "full", also what a Node install brings beyond the binary: npm (and npx), the headers in
# /usr/local/include/node, and an npm configuration whose nodedir points at them (without
# it cmake-js tries to download the headers, which fails offline). This machine's other npm
# settings and its CA bundle are carried over: they belong to the machine, not the project.
bare_root_add_node() {
  local root=$1 full=${2:-}
  local node_bin
  node_bin=$(command -v node)
  cp "$node_bin" "$root/usr/local/bin/node"
  [ "$full" = full ] || return 0
  local npm_dir
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")  # .../node_modules/npm
  mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/include" "$root/usr/local/etc"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  local nodedir
  nodedir=$(npm config get nodedir 2>/dev/null || true)
  [ -n "$nodedir" ] && [ -d "$nodedir/include/node" ] || nodedir=/usr
  cp -a "$nodedir/include/node" "$root/usr/local/include/node"
  # This machine's npm configuration files, with the CA file pointed at a copy of this
  # machine's bundle and nodedir at the copied headers.
  mkdir -p "$root/etc/ssl/certs" "$root/root"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca-certificates.crt"
  local from to
  for from in "$(npm prefix -g)/etc/npmrc:$root/usr/local/etc/npmrc" "/etc/npmrc:$root/etc/npmrc" "$HOME/.npmrc:$root/root/.npmrc"; do
    to=${from#*:}; from=${from%%:*}
    [ -f "$from" ] || continue
    sed -e '/^nodedir[[:space:]]*=/d' -e 's#^cafile[[:space:]]*=.*#cafile=/etc/ssl/certs/host-ca-certificates.crt#' "$from" >"$to"
  done
  echo "nodedir=/usr/local" >>"$root/usr/local/etc/npmrc"
}

# bare_root_mount ROOT: /proc, /sys, /dev (with pts and a private shm) and DNS, for apt,
# compilers and browsers inside the root. Undone by bare_root_release.
bare_root_mount() {
  local root=$1
  # The root a mount point of its own: inside the chroot, `unshare -m` (test/package.test.ts)
  # must change the propagation of "/", which fails (EINVAL) unless "/" is a mount.
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount -t sysfs sys "$root/sys"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
  mount -t tmpfs -o size=2g shm "$root/dev/shm"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # apt settings of this machine (snapshot dates etc.), so the root sees the same archive.
  cp /etc/apt/apt.conf.d/99* "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
}

# bare_root_release ROOT: unmounts everything under ROOT; returns non-zero if anything is
# still mounted there (then nothing under ROOT may be removed).
bare_root_release() {
  local root=$1 m
  [ -d "$root" ] || return 0
  mounted() { findmnt -rn -o TARGET | awk -v r="$root" '$0 == r || index($0, r "/") == 1'; }
  for m in $(mounted | sort -r); do umount -l "$m" 2>/dev/null || true; done
  [ -z "$(mounted)" ]
}

# in_root ROOT DIR CMD...: runs CMD inside ROOT in DIR with a clean environment (PATH, HOME,
# the host CA bundle for Node) plus any VAR=value given in $IN_ROOT_ENV.
in_root() {
  local root=$1 dir=$2
  shift 2
  # shellcheck disable=SC2086
  chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca-certificates.crt \
    ${IN_ROOT_ENV:-} /bin/sh -c 'cd "$0" && exec "$@"' "$dir" "$@"
}
