#!/usr/bin/env bash
# Deployment checks: hadolint on the Dockerfile, then ci/deploy/check_chart.py on the Helm chart
# (helm lint, render with every charts/skype-gateway/ci/*.yaml, kubernetes-validate --strict,
# assertions, values that must be rejected).
#
# Usage: bash ci/deploy/run.sh        (from anywhere; needs python3 >= 3.11 and PyPI)
#
# The only network use is `pip install` of the pinned ci/deploy/requirements.txt into a
# virtualenv, reused while the requirements and the Python version stay the same. Override the
# virtualenv's place with DEPLOY_CHECK_VENV, the interpreter with PYTHON.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

# shellcheck source=ci/venv.sh
source ci/venv.sh
pinned_venv deploy "$here/requirements.txt"

# Both checks run even when the first fails, so one CI run shows every problem.
status=0

echo "== hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}') Dockerfile"
if "$venv/bin/hadolint" --no-color --config .hadolint.yaml Dockerfile; then
  echo "hadolint: Dockerfile clean (config .hadolint.yaml, failure threshold info, no rule ignored)"
else
  echo "hadolint: Dockerfile FAILED"
  status=1
fi
echo

"$venv/bin/python" "$here/check_chart.py" "$@" || status=1

if [[ $status -ne 0 ]]; then
  echo "ci/deploy/run.sh: FAILED" >&2
fi
exit "$status"
