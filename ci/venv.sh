# Sourced by ci/contract/run.sh and ci/deploy/run.sh: `pinned_venv NAME REQUIREMENTS` sets
# `venv` to a virtualenv holding exactly REQUIREMENTS (pinned, wheels only), made once per
# requirements file and Python version and reused after that. NAME_CHECK_VENV (NAME upper-cased)
# overrides its place, PYTHON the interpreter.

pinned_venv() {
  local name=$1 requirements=$2
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "$name check: needs Python >= 3.11 ($python is $("$python" --version 2>&1))" >&2
    exit 1
  fi
  local key override
  key="$({ cat "$requirements"; "$python" --version; } | sha256sum | cut -c1-16)"
  override="${name^^}_CHECK_VENV"
  venv="${!override:-${XDG_CACHE_HOME:-$HOME/.cache}/skype-gateway/$name-check-$key}"
  # The stamp is written only after a complete install, so a broken one is redone.
  if [[ ! -f "$venv/.installed" ]]; then
    echo "== installing pinned tools into $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # Wheels only: no build step that could fetch build dependencies.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      --only-binary=:all: -r "$requirements"
    touch "$venv/.installed"
  fi
}
