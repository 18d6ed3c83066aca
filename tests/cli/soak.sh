#!/bin/bash
# tests/cli/soak.sh - the crash soak (scripts/soak.sh) in short: eddy demo
# on one store, SIGKILLed at 5 random moments and resumed each time, then a
# final run whose invariant checks cover every order of the store, and
# PRAGMA integrity_check. The kill moments are random (the seed is
# printed: SOAK_SEED=... scripts/soak.sh 5 repeats a run).
# usage: bash soak.sh EDDY_BINARY TESTDATA_DIR
set -euo pipefail

EDDY=${1:?usage: soak.sh EDDY_BINARY TESTDATA_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
EDDY="$EDDY" SOAK_ORDERS=${SOAK_ORDERS:-60} SOAK_MAX_MS=${SOAK_MAX_MS:-1500} \
    exec bash "$HERE/../../scripts/soak.sh" 5
