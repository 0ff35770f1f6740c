#!/usr/bin/env bash
# Set up a development/demo environment from a clean clone on Debian 12:
#   system packages (only what is missing), a virtualenv in .venv, carecall installed in it.
# Usage: scripts/setup.sh [demo|test]   (test adds PostgreSQL, Chromium, poppler for the suite)
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-demo}"

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
PY="${PYTHON:-python3}"
have_cmd "$PY" || need+=(python3)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# WeasyPrint (PDF invoices) needs Pango; fonts for readable PDFs.
ldconfig -p 2>/dev/null | grep -q 'libpango-1.0.so.0' || need+=(libpango-1.0-0 libpangoft2-1.0-0)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
if [ "$purpose" = test ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  have_cmd chromium || need+=(chromium)
  have_cmd chromedriver || need+=(chromium-driver)
  have_cmd pdftotext || need+=(poppler-utils)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if have_cmd sudo; then SUDO="sudo"; else
      echo "setup: please install as root: apt-get install ${need[*]}" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The real-Asterisk tests (tests/asterisk_rig.py): install the shared bundle when it sits
# beside the checkout and no asterisk is installed yet.
if [ "$purpose" = test ] && [ -x ../shared/asterisk/install.sh ] \
   && ! have_cmd asterisk && [ ! -x /opt/asterisk-sip/sbin/asterisk ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Asterisk from ../shared/asterisk"
    ../shared/asterisk/install.sh
  elif have_cmd sudo && sudo -n true 2>/dev/null; then
    echo "setup: installing Asterisk from ../shared/asterisk (sudo)"
    sudo ../shared/asterisk/install.sh
  else
    echo "setup: no asterisk; the real-Asterisk tests will be skipped (run: sudo ../shared/asterisk/install.sh)"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
target="."
[ "$purpose" = test ] && target=".[test]"
mkdir -p var
if ! .venv/bin/python -m pip install -q -e "$target" > var/setup-pip.log 2>&1; then
  cat var/setup-pip.log >&2
  echo "setup: pip install failed (log above, also in var/setup-pip.log)" >&2
  exit 1
fi
echo "setup: ready (.venv)"
