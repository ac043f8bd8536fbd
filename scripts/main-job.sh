#!/usr/bin/env bash
# Engine's main job (README.md): on Fashion-MNIST, train the teacher, train the student from scratch,
# distill the student from the teacher with KD (same budget as from scratch), over 3 seeds, and print
# one table (test accuracy mean ± std, time). Extra arguments go to `engine main-job`, e.g. a quick run:
#   ./scripts/main-job.sh --limit 4096 --test-limit 2000 --teacher-epochs 3 --epochs 3
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/apt.sh
ensure_dotnet || exit 1
ensure_apt dataset-fashion-mnist || exit 1
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/Engine.Cli -c Release -nologo -clp:ErrorsOnly || exit 1
dotnet src/Engine.Cli/bin/Release/net10.0/engine.dll main-job "$@"
