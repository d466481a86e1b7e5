#!/usr/bin/env bash
# Make sure what the test suite needs is installed and running (CI and fresh machines).
set -uo pipefail

apt_install() {
  command -v apt-get >/dev/null || { echo "apt-get not available: cannot install $*" >&2; return 1; }
  [[ -n "${_APT_UPDATED:-}" ]] || { apt-get update -qq >/dev/null 2>&1 || true; _APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL: installed and accepting connections on 127.0.0.1:5432.
if ! command -v pg_ctlcluster >/dev/null; then
  apt_install postgresql || true
fi
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$ver" ]] && pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

# NATS with JetStream (127.0.0.1:4222) and Redis (127.0.0.1:6379) for the --export tests, which
# also start private ones on free ports from the same binaries.
if ! command -v nats-server >/dev/null && [[ ! -x /usr/sbin/nats-server ]]; then
  apt_install nats-server || echo "could not install nats-server" >&2
fi
if ! command -v redis-server >/dev/null; then
  apt_install redis-server || echo "could not install redis-server" >&2
fi
nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
if [[ -x "$nats_bin" ]] && ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  mkdir -p /var/lib/nats-server
  nohup "$nats_bin" -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server >/var/log/nats-server.log 2>&1 &
fi
if command -v redis-server >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null || echo "could not start redis" >&2
fi

# nginx for tests/test_nginx.py (deploy/nginx.conf); that test skips without it.
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  apt_install nginx-light || echo "could not install nginx" >&2
fi

# iptables for tests/test_network_faults.py, which cuts, thins and slows the traffic between a
# replica in a network namespace and PostgreSQL (it needs root and iproute2, and skips without them).
if ! command -v iptables >/dev/null; then
  apt_install iptables || echo "could not install iptables" >&2
fi

# Chromium for the browser tests.
if [[ ! -x /usr/bin/chromium ]]; then
  apt_install chromium || echo "could not install chromium" >&2
fi
exit 0
