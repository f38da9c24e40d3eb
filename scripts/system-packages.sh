#!/usr/bin/env bash
# `make install` (and so `make demo` / `make test`) and `.ci/run`: the Debian packages fmp uses.
#
#   tesseract-ocr, tesseract-ocr-eng  the `ocr-tess` backend (modules/backends/ocr.py runs the
#                                     `tesseract` binary on English data, eng.traineddata)
#   chromium                          the e2e test drives the Prefect UI in headless Chromium
#   python3-venv                      only when $PYTHON cannot create a venv (Debian's python3)
#
# A package is installed only when what fmp uses from it is missing, with apt-get as root
# (noninteractive, quiet). It never fails the build: without root or apt-get, or when the install
# fails, it prints one line, and the tests that need the package skip and say so.
set -uo pipefail

PYTHON=${PYTHON:-python3}
TESSDATA=/usr/share/tesseract-ocr/5/tessdata/eng.traineddata
missing=()
if ! command -v tesseract >/dev/null 2>&1 || [ ! -f "$TESSDATA" ]; then
  missing+=(tesseract-ocr tesseract-ocr-eng)
fi
[ -x /usr/bin/chromium ] || missing+=(chromium)
if command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

what="Debian packages ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-packages: $what are missing and there is no apt-get; tests that need them will skip" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-packages: $what are missing; as root: apt-get install -y ${missing[*]} (tests that need them skip)" >&2
  exit 0
fi
log=$(mktemp "${TMPDIR:-/tmp}/fmp-apt.XXXXXX.log")
echo "system-packages: installing $what (apt-get, log $log)" >&2
if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
  rm -f "$log"
else
  echo "system-packages: could not install $what (see $log); tests that need them will skip" >&2
fi
exit 0
