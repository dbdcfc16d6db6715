#!/usr/bin/env bash
# Install the real servers the test suite drives (BIND, OpenDKIM + miltertest).
# Idempotent: does nothing when every tool is already there.
set -euo pipefail

declare -A PACKAGE_OF=(
  [named]=bind9
  [named-checkzone]=bind9-utils
  [rndc]=bind9-utils
  [opendkim]=opendkim
  [opendkim-testkey]=opendkim-tools
  [miltertest]=miltertest
  [sshd]=openssh-server
  [ssh-keygen]=openssh-client
  [rspamd]=rspamd
  [rspamadm]=rspamd
  [exim4]=exim4-daemon-light
  [sudo]=sudo
  [useradd]=passwd
)
PATH="$PATH:/usr/sbin:/sbin"
missing=()
for tool in "${!PACKAGE_OF[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing tools; run: sudo apt-get install -y $packages" >&2
  exit 1
fi
echo "system-deps: installing $packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $packages >/dev/null
# The packaged daemons are not wanted running: tests start their own on loopback.
for service in named bind9 opendkim rspamd exim4 ssh; do
  systemctl disable --now "$service" >/dev/null 2>&1 || true
done
