#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the browser tests (tests/system/deploy/test_ui_browser.py).
#
# Debian's `chromium` and `chromium-driver` packages, never a browser download: they come from the same
# apt sources as the rest of the system, and the driver always matches the browser's version.
# Installs only when missing and only as root (CI runs as root); otherwise it says what is missing and
# exits 0, so `make test` goes on and the browser tests skip with the same message.
set -u

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_browser: missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" \
         "(the browser tests skip until then)" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_browser: missing ${missing[*]} and no apt-get here; install Chromium and chromedriver" \
         "yourself (the browser tests skip until then)" >&2
    exit 0
fi

echo "ensure_browser: installing ${missing[*]} with apt-get ..."
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
    echo "ensure_browser: apt-get could not install chromium chromium-driver (the browser tests skip)" >&2
    exit 0
fi
echo "ensure_browser: $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
