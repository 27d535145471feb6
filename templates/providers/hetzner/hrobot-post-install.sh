#!/bin/bash
# Runs in the installed system once installimage has written it (CAPH's
# postInstallScript). CAPH then writes cloud-init's NoCloud seed
# (/var/lib/cloud/seed/nocloud-net) and waits for `cloud-init status`, so
# the image must have cloud-init: Hetzner's base images do not. The host's
# network is what installimage configured; cloud-init must leave it.
# As CAPH v1.1.8's hetznerbaremetal-mt-md-1-ubuntu.yaml does; docs/providers.md.
set -Eeuo pipefail

mkdir -p /etc/cloud/cloud.cfg.d
echo "network: {config: disabled}" > /etc/cloud/cloud.cfg.d/99-lok8s-networking.cfg

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y cloud-init apparmor apparmor-utils
cloud-init clean --logs
