#!/usr/bin/env bash
# Installs what skiff needs on a fresh Debian 12 machine: the Debian
# packages the node agent uses (containerd, runc, CNI plugins, nftables,
# iproute2) and the Go modules. Idempotent: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || pkgs+=("$2"); }
need containerd containerd
need runc runc
need nft nftables
need ip iproute2
[ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "skiff: missing Debian packages: ${pkgs[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "installing: ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null 2>&1 || { echo "skiff: Go 1.26 is required (https://go.dev/dl)" >&2; exit 1; }
go mod download
