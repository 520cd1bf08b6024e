#!/bin/sh
# CAVRA governed runtime: install the runtime policy for release 2025.11.3 (channel stable).
set -eu
POLICY_DIR=/etc/cavra/runtime
install -d -m 0755 "$POLICY_DIR"
install -m 0644 runtime-policy.json "$POLICY_DIR/runtime-policy.json"
echo "cavra runtime policy 2025.11.3 installed"
