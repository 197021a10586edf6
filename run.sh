#!/usr/bin/env bash
# One entry point for a fresh Debian bookworm machine (as root) and for a developer's machine; safe to run twice.
#   bash run.sh drill   the main job: fault drills against the embedded local stack, ending in the HTML report
#   bash run.sh test    the test suite (what CI runs)
#   bash run.sh bench   the benchmarks (numbers into out/bench/)
#   bash run.sh soak    load with a seeded fault every 10 s (30 min; CI: --minutes 2), figures into out/soak/
#   bash run.sh setup   only install what the others need
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: the real services of the local stack, kernel fault tools, a browser to check the report
# nginx: the real reverse proxy in front of the two backends (BE-2, issue 15)
# docker.io + mmdebstrap: the docker provider (issue 17) starts dockerd itself and builds its images from a bookworm base
APT_PACKAGES=(redis-server clickhouse-server postgresql nftables iproute2 procps util-linux chromium python3-venv zstd nginx nodejs
              docker.io mmdebstrap)

install_debian_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "run.sh: these Debian packages are missing: ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
  echo "run.sh: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_python_packages() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  local stamp=.venv/.tradedrill-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "run.sh: installing Python packages into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,docker]'
    touch "$stamp"
  fi
}

# the local trading panel's chart library (TV-3): TradingView's lightweight-charts from npm, pinned by
# reference/backend/web/package-lock.json, served by the backend (never a CDN at view time)
install_panel_packages() {
  local web=reference/backend/web
  [ -f "$web/node_modules/lightweight-charts/package.json" ] && [ ! "$web/package-lock.json" -nt "$web/node_modules" ] \
    && return 0
  if ! command -v npm >/dev/null; then   # Debian's nodejs has no npm of its own (NodeSource's does)
    [ "$(id -u)" = 0 ] || { echo "run.sh: npm is missing; run as root, or: sudo apt-get install -y npm" >&2; exit 2; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  echo "run.sh: installing the panel's npm packages into $web/node_modules"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
}

setup() {
  install_debian_packages
  install_python_packages
  install_panel_packages
  export PATH="$PWD/.venv/bin:$PATH"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  setup) setup ;;
  test)  setup; exec nox -s tests -- "$@" ;;
  drill) setup; exec nox -s drills -- "$@" ;;
  bench) setup; exec nox -s bench -- "$@" ;;
  soak)  setup; exec nox -s soak -- "$@" ;;
  *) echo "usage: bash run.sh drill|test|bench|soak|setup [args...]" >&2; exit 2 ;;
esac
