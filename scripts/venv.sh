# Sourced by ./mitmlab and ./run-tests. `ensure_venv [EXTRAS]` makes sure .venv exists and holds the
# lab (with the optional dependencies EXTRAS, e.g. dev); it re-installs only when pyproject.toml changed
# since the last install. A function, because a sourced script sees its caller's arguments.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"

ensure_venv() {
    local extras=${1:-}
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "mitm-lab needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)." >&2
        exit 2
    fi
    if [ ! -x "$venv/bin/python" ]; then
        echo "Creating $venv ..." >&2
        "$python" -m venv "$venv" || {
            echo "Could not create a virtual environment. On Debian/Ubuntu: apt-get install python3-venv" >&2
            exit 2
        }
    fi
    local stamp="$venv/.installed${extras:+-$extras}"
    if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
        echo "Installing mitm-lab${extras:+ with [$extras]} into $venv (first run takes a minute) ..." >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$repo${extras:+[$extras]}" \
            2> >(grep -v -e BuildBackendWarning -e '^  ' >&2 || true)
        touch "$stamp"
    fi
}
