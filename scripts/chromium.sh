#!/usr/bin/env bash
# Headless Chromium and its driver for the browser tests (tests/browser.py): Debian's chromium and chromium-driver.
# Installs them when missing; does nothing when they are there. The tests drive them with Selenium; nothing is
# downloaded from Google (these machines reach only the package registries).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "Chromium is missing; as root: apt-get install chromium chromium-driver" >&2; exit 1; }
  SUDO="sudo"
fi
echo "installing Debian's chromium and chromium-driver ..."
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
