#!/usr/bin/env bash
# scripts/test-packages.sh OUTDIR: proves what scripts/package.sh left in OUTDIR on machines
# that never saw the source. Needs root (chroot, mount) and, on its first run, the Debian
# mirror. docs/INSTALL.md says what each part exercises.
#   1. The .deb in a fresh Debian bookworm root (debootstrap minbase + man-db, no Rust, no
#      source tree): dpkg -i, apt-get -f install, the `invar` user, `invar demo` exits 1 with
#      its findings as that user, `man invar`, the completions and the conffile in place,
#      `invar validate` accepts the shipped config; `systemd-analyze verify` on the unit (on
#      the host, against the chroot's files: the chroot has no systemd).
#   2. The container image's root filesystem, assembled as the Dockerfile does (a fresh copy
#      of the same base, the binary in /usr/local/bin, the non-root user): `invar demo` as
#      that user, and the HEALTHCHECK command against `invar watch` in the chroot.
#   3. The wheel in a fresh virtualenv: pip install (no index), `invar demo` exits 1.
# The base root is cached as a tarball under ~/.cache/invar-debootstrap (INVAR_DEBOOTSTRAP_CACHE).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/test-packages.sh OUTDIR" >&2; exit 64; }
out=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "test-packages: needs root (chroot, mount)" >&2; exit 1; }

deb=$(ls "$out"/invar_*.deb | head -1)
whl=$(ls "$out"/invar_cli-*.whl | head -1)
[ -f "$deb" ] && [ -f "$whl" ] && [ -x "$out/invar" ] || { echo "test-packages: $out lacks invar, the .deb or the wheel (run scripts/package.sh $1)" >&2; exit 1; }

# `invar --version`: the commit and, as package.sh sets SOURCE_DATE_EPOCH, the commit's date.
want_commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
want_date=$(TZ=UTC git -C "$root" log -1 --format=%cd --date=format-local:%Y-%m-%d 2>/dev/null || true)
got=$("$out/invar" --version)
case "$got" in
  "invar "*" ($want_commit $want_date)") ;;
  *) if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then echo "test-packages: FAIL: '$got', expected commit $want_commit and date $want_date" >&2; exit 1; fi ;;
esac

step() { printf 'test-packages: %s\n' "$*" >&2; }
fail() { printf 'test-packages: FAIL: %s\n' "$*" >&2; exit 1; }

# The base: Debian bookworm minbase, plus man-db (for `man invar`) and ca-certificates (which
# the image installs). Built once, then a tarball.
cache="${INVAR_DEBOOTSTRAP_CACHE:-$HOME/.cache/invar-debootstrap}"
base="$cache/bookworm-minbase-mandb-ca.tar.gz"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if [ ! -f "$base" ]; then
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/build.XXXXXX")
  step "debootstrap bookworm from $mirror (once; cached as $base)"
  debootstrap --variant=minbase --include=man-db,ca-certificates bookworm "$tmp/root" "$mirror" >"$tmp/log" 2>&1 \
    || { tail -20 "$tmp/log" >&2; fail "debootstrap"; }
  # No package lists or .debs in the cache: apt-get update fetches fresh lists when needed.
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
  tar -C "$tmp/root" -czf "$base.part" .
  mv "$base.part" "$base"
  rm -rf "$tmp"
fi

work=$(mktemp -d /tmp/invar-test-packages.XXXXXX)
mounts=()
cleanup() {
  for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  [ -n "${watch_pid:-}" ] && kill "$watch_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A fresh root from the cached base, with /proc and /dev for the programs run inside.
new_root() {
  local dir=$1
  mkdir -p "$dir"
  tar -C "$dir" -xzf "$base"
  mount -t proc proc "$dir/proc"; mounts+=("$dir/proc")
  mount --bind /dev "$dir/dev"; mounts+=("$dir/dev")
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
}
in_root() { local dir=$1; shift; chroot "$dir" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 "$@"; }

# Expect `invar demo` to exit 1 and to name the demo's seeded failures.
check_demo() {
  local what=$1 log=$2 rc=$3
  [ "$rc" = 1 ] || { cat "$log" >&2; fail "$what: invar demo exited $rc, expected 1 (its seeded defects)"; }
  grep -q "fail" "$log" || { cat "$log" >&2; fail "$what: invar demo printed no failing invariant"; }
  step "$what: invar demo exited 1 with $(grep -c -i 'fail' "$log") lines naming failures"
}

# 1. The .deb.
r="$work/deb"
new_root "$r"
[ ! -e "$r/usr/bin/cargo" ] && [ ! -e "$r/usr/bin/rustc" ] || fail "the base has a Rust toolchain"
cp "$deb" "$r/tmp/"
step "dpkg -i $(basename "$deb") in a fresh bookworm root"
if ! in_root "$r" dpkg -i "/tmp/$(basename "$deb")" >"$work/dpkg.log" 2>&1; then
  step "dpkg -i left dependencies unmet; apt-get -f install"
  in_root "$r" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive in_root "$r" apt-get -f install -y -qq >>"$work/dpkg.log" 2>&1 \
    || { cat "$work/dpkg.log" >&2; fail "apt-get -f install"; }
fi
in_root "$r" dpkg -s invar | grep -q "^Status: install ok installed" || { cat "$work/dpkg.log" >&2; fail "invar is not installed"; }
in_root "$r" invar --version
in_root "$r" getent passwd invar | grep -q ":/var/lib/invar:/usr/sbin/nologin$" || fail "no invar system user"
for f in /usr/bin/invar /usr/share/man/man1/invar.1.gz /usr/share/bash-completion/completions/invar \
         /usr/share/zsh/vendor-completions/_invar /usr/share/fish/vendor_completions.d/invar.fish \
         /lib/systemd/system/invar-watch.service /etc/invar/invar.yaml; do
  [ -s "$r$f" ] || fail "$f missing from the package"
done
grep -qx /etc/invar/invar.yaml "$r/var/lib/dpkg/info/invar.conffiles" || fail "/etc/invar/invar.yaml is not a conffile"
[ ! -e "$r/etc/systemd/system/multi-user.target.wants/invar-watch.service" ] || fail "invar-watch is enabled on install"
# The chroot's names: the host's stat would map the uid/gid through the host's passwd.
mode=$(in_root "$r" stat -c '%U:%G %a' /etc/invar/invar.yaml)
[ "$mode" = "root:invar 640" ] || fail "/etc/invar/invar.yaml is $mode, not root:invar 640"
in_root "$r" invar validate --config /etc/invar/invar.yaml || fail "the shipped config does not validate"
# As the service's user, in a directory it owns.
in_root "$r" install -d -o invar -g invar /tmp/d
set +e
chroot --userspec=invar:invar "$r" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp/d invar demo --dir /tmp/d >"$work/demo-deb.log" 2>&1
rc=$?
set -e
check_demo "deb" "$work/demo-deb.log" "$rc"
in_root "$r" man -P cat invar >"$work/man.txt" 2>"$work/man.err" || { cat "$work/man.err" >&2; fail "man invar"; }
grep -q "invar" "$work/man.txt" && grep -q -i "validate" "$work/man.txt" || fail "man invar shows no page"
step "man invar: $(wc -l <"$work/man.txt") lines"
# The unit: systemd-analyze on the host (the chroot has no systemd). `--root` would look for
# sysinit.target in the chroot, so the installed unit is checked as a copy whose /usr/bin/invar
# is the chroot's (the package's binary: ExecStart must be executable); --man=no because the
# host has no invar man page (the chroot's is checked above). Any output is a failure.
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing on the host"
unit="$work/unit/invar-watch.service"
mkdir -p "$work/unit"
sed "s|/usr/bin/invar|$r/usr/bin/invar|g" "$r/lib/systemd/system/invar-watch.service" >"$unit"
if ! systemd-analyze verify --man=no "$unit" >"$work/verify.log" 2>&1 || [ -s "$work/verify.log" ]; then
  cat "$work/verify.log" >&2; fail "systemd-analyze verify invar-watch.service"
fi
exposure=$(systemd-analyze security --offline=yes --man=no "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
step "systemd-analyze verify (host, systemd $(systemd-analyze --version | head -1 | awk '{print $2}')): clean; security exposure $exposure"
# The hardening must not regress silently: 1.7 when written, "OK" is below 4.
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e + 0 <= 2.5) }' || fail "invar-watch.service exposure $exposure > 2.5"
in_root "$r" dpkg --purge invar >/dev/null || fail "dpkg --purge invar"
[ ! -e "$r/usr/bin/invar" ] && [ ! -e "$r/var/lib/invar" ] || fail "purge left /usr/bin/invar or /var/lib/invar"

# 2. The image's root filesystem, as the Dockerfile's final stage builds it.
r="$work/image"
new_root "$r"
install -m 0755 "$out/invar" "$r/usr/local/bin/invar"
# The Dockerfile's RUN line, verbatim (it is extracted from the Dockerfile, so the two agree).
run=$(sed -n 's/^RUN \(groupadd .*\)$/\1/p' "$root/Dockerfile")
[ -n "$run" ] || fail "no 'RUN groupadd …' line in the Dockerfile"
in_root "$r" sh -c "$run"
user=$(sed -n 's/^USER \(.*\)$/\1/p' "$root/Dockerfile" | tail -1)
workdir=$(sed -n 's/^WORKDIR \(.*\)$/\1/p' "$root/Dockerfile" | tail -1)
[ -n "$user" ] && [ "$user" != root ] && [ -n "$workdir" ] || fail "the Dockerfile has no non-root USER and WORKDIR"
as_user() { chroot --userspec="$user:$user" "$r" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$workdir" sh -c "cd $workdir && $*"; }
set +e
as_user invar demo --dir "$workdir/demo" >"$work/demo-image.log" 2>&1
rc=$?
set -e
check_demo "image" "$work/demo-image.log" "$rc"
# HEALTHCHECK: the Dockerfile's command against `invar watch` on the demo's config.
hc=$(sed -n 's/^  CMD \(.*\)$/\1/p' "$root/Dockerfile" | head -1)
[ -n "$hc" ] || fail "no HEALTHCHECK CMD in the Dockerfile"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chroot --userspec="$user:$user" "$r" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$workdir" \
  INVAR_HEALTH_PORT="$port" invar watch --config "$workdir/demo/invar.yaml" --listen "127.0.0.1:$port" \
  >"$work/watch.log" 2>&1 &
watch_pid=$!
ok=
for _ in $(seq 1 50); do
  if chroot --userspec="$user:$user" "$r" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin INVAR_HEALTH_PORT="$port" sh -c "$hc" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || { cat "$work/watch.log" >&2; fail "the HEALTHCHECK command never succeeded against invar watch"; }
kill "$watch_pid"; wait "$watch_pid" 2>/dev/null || true; watch_pid=
# And it fails when nothing listens (a check that cannot fail proves nothing).
if chroot --userspec="$user:$user" "$r" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin INVAR_HEALTH_PORT="$port" sh -c "$hc" >/dev/null 2>&1; then
  fail "the HEALTHCHECK command succeeds with invar watch stopped"
fi
step "image: HEALTHCHECK passes against invar watch and fails once it stops"

# 3. The wheel, in a fresh virtualenv.
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --no-index "$whl"
[ -x "$work/venv/bin/invar" ] || fail "the wheel put no invar in the venv's bin"
"$work/venv/bin/invar" --version
set +e
(cd "$work" && "$work/venv/bin/invar" demo --dir "$work/wheel-demo") >"$work/demo-wheel.log" 2>&1
rc=$?
set -e
check_demo "wheel" "$work/demo-wheel.log" "$rc"
step "all passed"
