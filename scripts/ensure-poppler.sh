#!/usr/bin/env bash
# Make Debian's poppler-utils (pdffonts, pdftoppm) available for the PDF export tests (needs root or
# sudo; no-op when present). Without it those tests are skipped; the rest of the PDF checks still run.
set -euo pipefail
if command -v pdffonts >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "ensure-poppler: poppler-utils missing and not root; pdffonts/pdftoppm tests will be skipped" >&2; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null
command -v pdftoppm
