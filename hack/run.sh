#!/usr/bin/env bash
# Starts a single-node skiff cluster on this machine: installs what is
# missing, builds skiff into /usr/local/bin and runs `skiff server` in the
# foreground (Ctrl-C stops it). Extra arguments go to `skiff server`.
# Afterwards, in another shell: `skiff kubectl get nodes`.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/deps.sh
export PATH=$PATH:/usr/local/go/bin
go build -o /usr/local/bin/skiff ./cmd/skiff
# The agent builds its pause and test images from this source tree.
export SKIFF_SOURCE_DIR="$PWD"
exec /usr/local/bin/skiff server "$@"
