#!/usr/bin/env bash
# h2load (Debian's nghttp2-client) drives the unary scenarios of `taskservice bench`.
# Installed with apt when it is missing and apt is usable; otherwise explain, and carry on:
# only the benchmark needs it.
set -uo pipefail
command -v h2load >/dev/null && exit 0
if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
  if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq nghttp2-client >/dev/null; then
    exit 0
  fi
fi
echo "note: h2load is not installed, so \`taskservice bench\` cannot run. Install nghttp2's h2load" \
  "(Debian/Ubuntu: apt-get install nghttp2-client; macOS: brew install nghttp2)." >&2
exit 0
