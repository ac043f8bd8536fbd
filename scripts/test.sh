#!/usr/bin/env bash
# Engine's test command (README.md): installs what the tests need, builds, runs every test,
# and ends with the totals on one line: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/apt.sh
ensure_dotnet || exit 1

# Debian packages the tests use (backends whose tests must not skip in CI are listed in
# ENGINE_REQUIRE_BACKENDS by .ci/run).
APT_PACKAGES=(ocl-icd-libopencl1 pocl-opencl-icd libnvrtc11.2 dataset-fashion-mnist)
[ ${#APT_PACKAGES[@]} -eq 0 ] || ensure_apt "${APT_PACKAGES[@]}" || exit 1

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
log=$(mktemp)
# Build everything first (the CLI, samples and benchmarks too), then test without rebuilding.
if ! dotnet build Engine.sln -c Release -nologo -clp:ErrorsOnly; then
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
dotnet test Engine.sln -c Release --no-build "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# Sum the per-assembly summaries ("Passed!  - Failed: 0, Passed: 18, Skipped: 0, Total: 18").
read -r passed failed skipped < <(grep -E '(Passed|Failed)! +- ' "$log" | awk -F'[:,]' '
  { for (i = 1; i < NF; i++) { k = $i; gsub(/.*- |[ !]/, "", k); v = $(i + 1) + 0;
      if (k == "Failed") f += v; else if (k == "Passed") p += v; else if (k == "Skipped") s += v } }
  END { printf "%d %d %d\n", p, f, s }')
rm -f "$log"
if [ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; then failed=1; fi  # build or runner failure
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$status"
