#!/usr/bin/env bash
# rts-agent installer for Linux (systemd).
#
#   curl -fsSL https://API.example.com/install.sh | sudo bash -s AGT-xxxxxxxx-...
#
# The API serves this file at /install.sh with its own public URL filled in below. Run directly:
#
#   sudo bash install.sh AGT-... --server https://API.example.com [--services nginx,postgresql]
#
# What it does: a Python venv in $RTS_AGENT_PREFIX (default /opt/rts-agent) with the rts-agent
# package, then `rts-agent install`, which registers with the token, writes
# /var/lib/rts-agent/config.json (0600, root), the systemd unit rts-agent.service, and enables and
# starts it. Re-running with a new token re-registers (--force), e.g. after the device was deleted.
#
# Where the agent comes from: the server's own wheel (GET /agent/package names it and its
# SHA-256), downloaded and checked against that hash before pip sees it; never a bare name from a
# public index (anyone can publish one). $RTS_AGENT_SOURCE (a requirement, wheel URL or path the
# operator chose, e.g. a private index) replaces it; $RTS_AGENT_SHA256 then checks a file or URL.
#
# Transport: the server URL must be https:// unless its host is loopback; --insecure (or
# RTS_AGENT_INSECURE=1) accepts plain http:// to another host, and the agent keeps that choice.
#
# The token: as the argument (convenient; visible in `ps` and shell history), or better from
# $RTS_AGENT_TOKEN or --token-file FILE; it reaches `rts-agent install` through the environment.
set -euo pipefail

SERVER="${RTS_SERVER:-@@SERVER_URL@@}"
SOURCE="${RTS_AGENT_SOURCE:-@@AGENT_SOURCE@@}"
SHA256="${RTS_AGENT_SHA256:-@@AGENT_SHA256@@}"
PREFIX="${RTS_AGENT_PREFIX:-/opt/rts-agent}"
STATE_DIR="${RTS_AGENT_STATE_DIR:-/var/lib/rts-agent}"
SERVICES=""
TOKEN="${RTS_AGENT_TOKEN:-}"
INSECURE="${RTS_AGENT_INSECURE:-}"
EXTRA=()

die() { echo "rts-agent install: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --server) SERVER="${2:-}"; shift 2 ;;
        --services) SERVICES="${2:-}"; shift 2 ;;
        --source) SOURCE="${2:-}"; SHA256="${RTS_AGENT_SHA256:-}"; shift 2 ;;
        --token-file) TOKEN="$(tr -d '[:space:]' < "${2:-/dev/null}")"; shift 2 ;;
        --no-start) EXTRA+=(--no-start); shift ;;
        --no-systemd) EXTRA+=(--no-systemd); shift ;;
        --insecure) INSECURE=1; shift ;;
        AGT-*) TOKEN="$1"; shift ;;
        *) die "unknown argument: $1" ;;
    esac
done

case "$SHA256" in @@*) SHA256="" ;; esac
[ -n "$TOKEN" ] || die "usage: install.sh AGT-... [--server URL] [--services a,b] (or RTS_AGENT_TOKEN, --token-file)"
case "$SERVER" in
    https://*) ;;
    http://127.*|http://localhost|http://localhost[:/]*|http://\[::1\]*) ;;
    http://*)
        # the wheel and the agent token would cross the network in clear text
        case "$INSECURE" in
            1|true|yes) ;;
            *) die "$SERVER is not TLS: use https://, or pass --insecure (RTS_AGENT_INSECURE=1) to accept the risk" ;;
        esac ;;
    *) die "no server URL: pass --server https://... (or fetch this script from the API's /install.sh)" ;;
esac
case "$INSECURE" in 1|true|yes) EXTRA+=(--insecure) ;; esac
if [ "$(id -u)" -ne 0 ] && [ -z "${RTS_AGENT_ALLOW_USER:-}" ]; then
    die "run as root (sudo): the agent restarts services and reads system state"
fi

PYTHON="${RTS_AGENT_PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            PYTHON="$(command -v "$candidate")"
            break
        fi
    done
fi
[ -n "$PYTHON" ] || die "Python 3.11+ is required (apt-get install python3 python3-venv, or dnf install python3.11)"

echo "rts-agent install: server $SERVER, python $PYTHON, prefix $PREFIX"
if [ ! -x "$PREFIX/bin/python" ]; then
    "$PYTHON" -m venv "$PREFIX" || die "cannot create a venv (install python3-venv)"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
case "$SOURCE" in
    @@*)  # run on its own, not served: ask the server which wheel it serves, and its hash
        PACKAGE="$(curl -fsSL "$SERVER/agent/package")" || die "cannot reach $SERVER/agent/package"
        SOURCE="$(printf '%s' "$PACKAGE" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["url"])')"
        SHA256="$(printf '%s' "$PACKAGE" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["sha256"])')"
        ;;
esac
if [ -n "$SHA256" ]; then
    # a file we check before pip runs anything from it
    case "$SOURCE" in
        http://*|https://*) FILE="$WORK/$(basename "${SOURCE%%\?*}")"
                            curl -fsSL -o "$FILE" "$SOURCE" || die "cannot download $SOURCE" ;;
        *) FILE="$WORK/$(basename "$SOURCE")"; cp "$SOURCE" "$FILE" || die "cannot read $SOURCE" ;;
    esac
    printf '%s  %s\n' "$SHA256" "$FILE" | sha256sum -c --quiet - \
        || die "$SOURCE does not match the SHA-256 the server published ($SHA256): not installed"
    SOURCE="$FILE"
fi
"$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SOURCE" \
    || die "pip could not install $SOURCE (set RTS_AGENT_SOURCE to a reachable wheel or path)"
LINK="${RTS_AGENT_LINK-/usr/local/bin/rts-agent}"  # empty: no command on PATH
if [ -n "$LINK" ]; then
    mkdir -p "$(dirname "$LINK")" && ln -sf "$PREFIX/bin/rts-agent" "$LINK" || true
fi

ARGS=(--state-dir "$STATE_DIR" install --server "$SERVER" --token-env RTS_AGENT_TOKEN --force)
export RTS_AGENT_TOKEN="$TOKEN"  # not on a command line: process listings show those
[ -n "$SERVICES" ] && ARGS+=(--services "$SERVICES")
rm -rf "$WORK"; trap - EXIT  # exec replaces this shell: no EXIT trap runs after it
exec "$PREFIX/bin/rts-agent" "${ARGS[@]}" "${EXTRA[@]}"
