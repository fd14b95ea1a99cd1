#!/usr/bin/env bash
# Installs what the project needs and is missing, on Debian 12 (bookworm):
#   - Debian packages: Mosquitto 2, Redis 7, PostgreSQL 15 (+ server headers to build TimescaleDB,
#     PostGIS 3 for the ledger's footprints and parts),
#     a C toolchain and cmake, Chromium for the browser tests;
#   - TimescaleDB (Apache-2 edition) built from Debian 13's source package, once per machine;
#   - the project virtualenv .venv from requirements.txt (re-synced when requirements.txt changes).
# Safe to run again: every step checks first and skips what is already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1m[install]\033[0m %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
need_root() {  # what is missing needs root: say what, and how to get it
    if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
        log "missing: $*"
        log "installing it needs root: run 'make setup' as root (or install sudo), then run this again"
        exit 1
    fi
}

export DEBIAN_FRONTEND=noninteractive
PG_MAJOR=15
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"

# --- Debian packages -------------------------------------------------------------------------
APT_PACKAGES=(
    mosquitto mosquitto-clients
    redis-server
    "postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" postgresql-client
    "postgresql-${PG_MAJOR}-postgis-3"
    build-essential cmake dpkg-dev
    python3-venv
    chromium fonts-noto-cjk
    libpango-1.0-0 libpangoft2-1.0-0 poppler-utils
    ca-certificates
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    need_root "Debian packages ${missing[*]}"
    log "installing Debian packages: ${missing[*]}"
    # The packages' own system services are not used (we run our own instances on free ports);
    # keep the package scripts from starting them.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        own_policy=1
    fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ "$own_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
else
    log "Debian packages: all present"
fi

# --- TimescaleDB (built from Debian 13's source package) --------------------------------------
# Debian 12 ships no TimescaleDB; Debian 13 ("trixie") has the source package (Apache-2 edition).
# We fetch that source through a private apt configuration that uses this machine's own Debian
# mirror, and build it against Debian 12's PostgreSQL headers.
ts_control="$("$PG_CONFIG" --sharedir)/extension/timescaledb.control"
if [ -f "$ts_control" ]; then
    log "TimescaleDB: present ($(grep default_version "$ts_control" | tr -d "'" | awk '{print $3}'))"
else
    need_root "the TimescaleDB extension for PostgreSQL 15"
    log "TimescaleDB: building from Debian 13 source"
    mirror=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        mirror="$(awk '/^URIs:/ {print $2; exit}' "$f" | grep -v security || true)"
        [ -n "$mirror" ] && break
    done
    if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
        mirror="$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
            /etc/apt/sources.list)"
    fi
    if [ -z "$mirror" ]; then log "no Debian mirror found in /etc/apt sources"; exit 1; fi
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/src"
    echo "deb-src $mirror trixie main" > "$work/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
    $SUDO apt-get "${apt_opts[@]}" update -q
    (cd "$work/src" && $SUDO apt-get "${apt_opts[@]}" source --download-only timescaledb)
    orig="$(ls "$work"/src/timescaledb_*.orig.tar.* 2>/dev/null | head -1)"
    if [ -z "$orig" ]; then log "TimescaleDB source not found on $mirror"; exit 1; fi
    mkdir -p "$work/build"
    tar -xf "$orig" -C "$work/build" --strip-components=1
    (cd "$work/build" && ./bootstrap -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF \
        -DTAP_CHECKS=OFF -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF -DWARNINGS_AS_ERRORS=OFF \
        >"$work/bootstrap.log" 2>&1 || { cat "$work/bootstrap.log"; exit 1; })
    make -C "$work/build/build" -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -50 "$work/make.log"; exit 1; }
    $SUDO make -C "$work/build/build" install >/dev/null
    log "TimescaleDB: installed $(basename "$orig")"
fi

# --- Python virtualenv ----------------------------------------------------------------------------
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && \
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
            PYTHON="$candidate"; break
        fi
    done
fi
if [ -z "$PYTHON" ]; then log "Python 3.11 not found"; exit 1; fi

stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing Python requirements"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements.txt
    echo "$want" > "$stamp"
else
    log "Python requirements: up to date"
fi
log "ready"
