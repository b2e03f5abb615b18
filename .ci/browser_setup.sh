#!/usr/bin/env bash
# Installs what the browser suite (tests/browser/) needs, only when it is missing:
#   - Debian's Chromium (/usr/bin/chromium), through apt-get (needs root; skipped with a note otherwise)
#   - the Python Playwright package (pip), which drives that Chromium.
# Never runs `playwright install`: the suite launches /usr/bin/chromium, no browser is downloaded.
# Idempotent and quick when everything is present. Not fatal: if an install fails the browser
# suite skips itself with a reason, and the rest of the tests still run.
set -uo pipefail

PY="${PYTHON:-python}"
CHROMIUM="${DPSD_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
    echo "browser_setup: chromium present ($CHROMIUM)"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser_setup: installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
        echo "browser_setup: WARNING: could not install chromium; the browser tests will be skipped" >&2
    fi
else
    echo "browser_setup: WARNING: $CHROMIUM missing and cannot apt-get install it (not root or no apt); browser tests will be skipped" >&2
fi

if "$PY" -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "browser_setup: playwright present"
else
    echo "browser_setup: installing the playwright Python package"
    if ! "$PY" -m pip install --quiet --disable-pip-version-check playwright; then
        echo "browser_setup: WARNING: could not install playwright; the browser tests will be skipped" >&2
    fi
fi
exit 0
