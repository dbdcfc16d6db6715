#!/usr/bin/env bash
# Make a pinned Pulumi CLI available and print the directory that holds it.
#
# 1. `pulumi` on PATH at the pinned version or newer is used as it is.
# 2. Otherwise the CLI is built from the Go module proxy into a cache outside
#    the repository (~/.cache/dkimroll/pulumi/<version>/bin), with the
#    `pulumi-resource-pulumi-python` launcher the engine runs for Python
#    dynamic providers beside it.
#
# dkimroll drives the engine through the Automation API with an inline
# program, so no Python language host binary is needed (see docs/architecture.md).
set -euo pipefail

PULUMI_VERSION="${DKIMROLL_PULUMI_VERSION:-$(cat "$(dirname "$0")/../.pulumi-version")}"
CACHE_ROOT="${DKIMROLL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dkimroll}"
BIN_DIR="$CACHE_ROOT/pulumi/$PULUMI_VERSION/bin"

log() { echo "ensure-pulumi: $*" >&2; }

version_ge() {  # version_ge A B: true when A >= B
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}

have_launcher() { [ -x "$1/pulumi-resource-pulumi-python" ]; }

if existing="$(command -v pulumi 2>/dev/null)"; then
  found="$("$existing" version 2>/dev/null | sed 's/^v//')"
  dir="$(dirname "$existing")"
  if version_ge "$found" "$PULUMI_VERSION" && have_launcher "$dir"; then
    echo "$dir"
    exit 0
  fi
fi

if [ -x "$BIN_DIR/pulumi" ] && have_launcher "$BIN_DIR"; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { log "Go is needed to build the Pulumi CLI (apt-get install golang)"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "building Pulumi CLI v$PULUMI_VERSION from Go modules (first run only; several minutes)"
start=$(date +%s)
cat > "$work/go.mod" <<GOMOD
module dkimroll.local/pulumi-build

go 1.24

require (
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
GOMOD
cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
(
  cd "$work"
  export GOFLAGS=-mod=mod
  go mod tidy >&2
  mkdir -p "$BIN_DIR.tmp"
  go build -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    -o "$BIN_DIR.tmp/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >&2
  sdk_dir="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
  install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$BIN_DIR.tmp/"
)
rm -rf "$BIN_DIR"
mv "$BIN_DIR.tmp" "$BIN_DIR"
log "built Pulumi CLI v$PULUMI_VERSION in $(( $(date +%s) - start ))s into $BIN_DIR"
echo "$BIN_DIR"
