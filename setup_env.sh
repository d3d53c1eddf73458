#!/usr/bin/env bash
# Creates .venv (Python 3.10) with every requirement; a second run only checks and returns.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)

if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

find_python310() {
  local c
  for c in "${PYTHON310:-}" python3.10 "$(command -v pyenv >/dev/null 2>&1 && pyenv root)"/versions/3.10.*/bin/python \
           "$HOME"/.pyenv/versions/3.10.*/bin/python; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py=$(find_python310) || {
    echo "setup_env.sh: Python 3.10 not found (OneFlow 0.9.0 ships wheels for Python <= 3.10 only)." >&2
    echo "  Install it (e.g. 'pyenv install 3.10') or set PYTHON310=/path/to/python3.10." >&2
    exit 1
  }
  echo "setup_env.sh: creating $VENV with $py"
  "$py" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -r requirements.txt
echo "$want" > "$stamp"
echo "setup_env.sh: $VENV ready"
