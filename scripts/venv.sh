# Sourced by ./mitmlab and ./run-tests: make sure .venv exists and holds the lab (and, if asked, the
# test tools). Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
extras=${1:-}

python=${PYTHON:-python3}
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
stamp="$venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
    echo "Installing mitm-lab${extras:+ with [$extras]} into $venv (first run takes a minute) ..." >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$repo${extras:+[$extras]}"
    touch "$stamp"
fi
