#!/usr/bin/env bash
# One idempotent setup for `make run` and `make test`: virtualenv, packages, the real
# dataset, and (with --browser) Chromium for the browser tests. Near-instant when
# nothing changed: the venv lives outside the checkout, keyed by requirements.txt's hash.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:?VENV must be set (the Makefile does)}"
PYTHON="${PYTHON:-python3}"
want_browser=0
[ "${1:-}" = "--browser" ] && want_browser=1

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
apt_ok() { command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; }
apt_updated=0
apt_install() {
  if ! apt_ok; then say "cannot install $* (needs apt-get as root): install it yourself"; return 1; fi
  if [ $apt_updated = 0 ]; then say "apt-get update"; apt-get update -qq >/dev/null; apt_updated=1; fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. Python packages (about 1.5 min and ~6 GB the first time)
if [ ! -f "$VENV/.complete" ]; then
  say "creating virtualenv $VENV (first run only)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>/dev/null || true
  # pip's notes about unused local index folders are noise here
  "$VENV/bin/python" -m pip install -q -r requirements.txt 2>&1 | { grep -v '^WARNING: Location' || true; } >&2
  touch "$VENV/.complete"
fi

# 2. The real dataset: $FMNIST_DATA_DIR, Debian's package, or a torchvision download at first use
have_data() {
  for d in "${FMNIST_DATA_DIR:-}" /usr/share/datasets/fashion-mnist artifacts/data/FashionMNIST/raw; do
    [ -n "$d" ] && ls "$d"/t10k-labels-idx1-ubyte* >/dev/null 2>&1 && return 0
  done
  return 1
}
if ! have_data && apt_ok; then
  apt_install dataset-fashion-mnist || say "dataset package not installed: a torchvision download will be tried"
fi
# parse + verify once (also fills the fast cache); a download is tried if still missing
"$VENV/bin/python" -c "from fmnist_core.data import load, summary; s = summary(load()); print('[setup] data:', s['train'], 'train /', s['test'], 'test images from', s['source'])" >&2

# 3. Chromium for the browser tests; PostgreSQL and openssl for the class-server tests
if [ $want_browser = 1 ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium || say "no Chromium: browser tests will be skipped"
fi
if [ $want_browser = 1 ] && ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql || say "no PostgreSQL: the tracking-server tests will be skipped"
fi
if [ $want_browser = 1 ] && ! command -v openssl >/dev/null; then
  apt_install openssl || say "no openssl: the https test will fail"
fi
