#!/usr/bin/env bash
# Makes sure the servers invar's tests talk to are installed and running on loopback:
# PostgreSQL (127.0.0.1:5432, trust, database `test`), MariaDB (127.0.0.1:3306, root, empty
# password, database `test`) and Redis (127.0.0.1:6379). Idempotent; safe to run on a machine where they already run.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  echo "ensure-services: nothing listens on 127.0.0.1:$1 after 30s" >&2
  return 1
}

# PostgreSQL
if ! port_open 5432; then
  if ! have pg_ctlcluster; then apt_install postgresql; fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  wait_port 5432
fi
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null

# MariaDB
if ! port_open 3306; then
  if ! have mariadbd; then apt_install mariadb-server; fi
  as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  wait_port 3306
fi
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test" 2>/dev/null \
  || mysql -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test"

# Redis (127.0.0.1:6379, DB 0, no persistence): the `redis` source's tests use keys under
# `invar-test:{pid}:` and delete them afterwards.
if ! port_open 6379; then
  if ! have redis-server; then apt_install redis-server; fi
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
  wait_port 6379
fi

# The `rediss://` tests (crates/invar-sources/tests/redis_tls.rs) start their own TLS
# redis-server on free ports (Debian's is built with TLS: `--tls-port`) and make a throwaway CA
# and certificates with the openssl CLI. Both binaries, even when 6379 is served by another
# redis (a container, say).
if ! have redis-server; then apt_install redis-server; fi
if ! have openssl; then apt_install openssl; fi

# A local SMTP server for the email sink's tests (started by the tests themselves:
# `python3 -m aiosmtpd -n -l 127.0.0.1:PORT`). Debian's package, into the system python.
if ! /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then apt_install python3-aiosmtpd; fi

# Tools for invar-watch's tests: `promtool check metrics` lints `/metrics` (Debian ships it in
# `prometheus`, at /usr/bin/promtool), and headless Chromium renders the status page
# (/usr/bin/chromium) for its DOM and a phone-sized screenshot.
if ! have promtool && [ ! -x /usr/bin/promtool ]; then apt_install prometheus; fi
if ! have promtool && [ ! -x /usr/bin/promtool ]; then
  echo "ensure-services: promtool is missing after installing prometheus" >&2
  exit 1
fi
# The prometheus source's tests start their own server (free port, backfilled with promtool)
# from the same package; the chaos and prometheus tests seed SQLite files with the sqlite3 shell.
if [ ! -x /usr/bin/prometheus ]; then apt_install prometheus; fi
if ! have sqlite3; then apt_install sqlite3; fi
if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
# The alertmanager sink's tests start their own Alertmanager (free port, temp storage, no
# cluster) from Debian's package; no service is started here.
if [ ! -x /usr/bin/prometheus-alertmanager ]; then apt_install prometheus-alertmanager; fi

echo "ensure-services: postgres, mariadb and redis are up; redis-server, openssl, aiosmtpd, promtool and chromium are installed"
