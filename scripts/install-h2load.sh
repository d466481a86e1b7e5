#!/usr/bin/env bash
# What `taskservice bench` needs beyond Python: h2load (Debian's nghttp2-client) drives the unary
# scenarios; a C compiler and libnghttp2's headers (libnghttp2-dev) build its watch driver
# (src/taskservice/bench/watchdriver.c). Installed with apt when missing and apt is usable;
# otherwise explain, and carry on: only the benchmark needs them.
set -uo pipefail
has_nghttp2_headers() {
  command -v cc >/dev/null && echo '#include <nghttp2/nghttp2.h>' | cc -E -x c - >/dev/null 2>&1
}
missing=()
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v cc >/dev/null || missing+=(gcc)
has_nghttp2_headers || missing+=(libnghttp2-dev)
(( ${#missing[@]} )) || exit 0
if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
  if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null; then
    exit 0
  fi
fi
echo "note: ${missing[*]} not installed, so \`taskservice bench\` cannot run. It needs nghttp2's h2load," \
  "a C compiler and libnghttp2's headers (Debian/Ubuntu: apt-get install nghttp2-client gcc libnghttp2-dev;" \
  "macOS: brew install nghttp2)." >&2
exit 0
