#!/usr/bin/env bash
# Engine's main job (README.md). Until the Fashion-MNIST distillation job lands (issue 4), this
# runs the README example: a small MLP trained with Engine's autograd, checking that it learns.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/apt.sh
ensure_dotnet || exit 1
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet run -c Release --project samples/TinyMlp
