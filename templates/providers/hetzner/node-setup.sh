#!/bin/bash
# lok8s-node-setup VERSION: prepares a Hetzner node for kubeadm, before it
# runs (the KubeadmControlPlane's and each pool's KubeadmConfigTemplate's
# preKubeadmCommands run it; their `files` write it to
# /usr/local/sbin/lok8s-node-setup). VERSION is the cluster's Kubernetes
# version, e.g. v1.35.4.
#
# Hetzner's stock images (ubuntu-24.04) have no container runtime, kubelet
# or kubeadm (CAPH: docs/caph/02-topics/03-node-image.md). This script:
#   - loads the kernel modules and sets the sysctls Kubernetes and Cilium
#     need (the ones CAPH's hcloud-kcp-ubuntu and kct-md-0-ubuntu bases set);
#   - turns swap off;
#   - when the image already has kubeadm and kubelet at VERSION and a
#     container runtime (an image-builder snapshot), installs nothing;
#   - otherwise installs containerd 2.x (Docker's containerd.io package) with
#     the systemd cgroup driver, and kubelet, kubeadm and kubectl VERSION from
#     the pkgs.k8s.io repository of VERSION's minor, and holds them.
# Nothing is downloaded unchecked: both repository keys are checked against
# their published fingerprints before apt trusts them, and apt checks every
# package against the signed repository index.
#
# It is idempotent: running it again changes nothing. LOK8S_NODE_ROOT (empty
# on a node) prefixes the files it writes, for its tests.
set -euo pipefail

version=${1:?usage: lok8s-node-setup vMAJOR.MINOR.PATCH}
if ! [[ $version =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "lok8s-node-setup: $version is not a version such as v1.35.4" >&2
  exit 2
fi
package_version=${version#v}                                     # 1.35.4
minor="v${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"                  # v1.35
root=${LOK8S_NODE_ROOT:-}

# The keys apt trusts, by fingerprint: pkgs.k8s.io (the isv:kubernetes
# OBS project's key, the same for every minor's repository) and Docker's
# (download.docker.com, https://docs.docker.com/engine/install/ubuntu/).
kubernetes_key=DE15B14486CD377B9E876E1A234654DA9A296436
docker_key=9DC858229FC7DD38854AE2D88D81803C0EBFCD88
containerd_versions='2.*' # containerd.io versions to accept: containerd 2

log() { echo "lok8s-node-setup: $*"; }

# write FILE: stdin to FILE (under $root), unless FILE already has it.
write() {
  local file=$root$1 content
  content=$(cat)
  mkdir -p "$(dirname "$file")"
  if [[ -f $file && $(cat "$file") == "$content" ]]; then
    return 1
  fi
  printf '%s\n' "$content" >"$file"
}

# Kernel modules and sysctls: container networking (bridged traffic seen by
# iptables, forwarding), Cilium (no reverse-path filter on its lxc*
# interfaces) and the kubelet's expectations (overcommit; reboot on a kernel
# panic or oops rather than hang).
write /etc/modules-load.d/lok8s-kubernetes.conf <<'EOF' || true
overlay
br_netfilter
EOF
modprobe overlay
modprobe br_netfilter
write /etc/sysctl.d/90-lok8s-kubernetes.conf <<'EOF' || true
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
net.ipv4.conf.lxc*.rp_filter = 0
vm.overcommit_memory = 1
kernel.panic = 10
kernel.panic_on_oops = 1
EOF
# A distribution file's key this kernel lacks must not stop the node:
# kubeadm's preflight checks the settings it needs.
sysctl --system >/dev/null || log "sysctl --system reported errors (above)"

# The kubelet refuses to run with swap on.
swapoff -a
if [[ -f $root/etc/fstab ]] && grep -Eq '^[^#].*[[:space:]]swap[[:space:]]' "$root/etc/fstab"; then
  sed -i -E 's/^([^#].*[[:space:]]swap[[:space:]].*)$/# \1 (lok8s-node-setup: no swap for the kubelet)/' "$root/etc/fstab"
fi

# The image's own Kubernetes, if it is VERSION.
installed() {
  command -v kubeadm >/dev/null && command -v kubelet >/dev/null &&
    [[ $(kubeadm version -o short 2>/dev/null) == "$version" ]] &&
    [[ $(kubelet --version 2>/dev/null) == "Kubernetes $version" ]]
}
runtime() { command -v containerd >/dev/null; }

if installed && runtime; then
  log "kubeadm and kubelet $version and containerd are installed: nothing to install"
  systemctl enable --now containerd
  systemctl enable kubelet
  exit 0
fi

apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 "$@"
}

# has_key FILE FINGERPRINT: FILE holds the key FINGERPRINT.
has_key() {
  local keys
  keys=$(gpg --show-keys --with-colons "$1" 2>/dev/null) || return 1
  [[ $'\n'$keys == *$'\n'"fpr:::::::::$2:"* ]]
}

# trust NAME URL FINGERPRINT: the key at URL as apt keyring NAME, if its
# fingerprint is FINGERPRINT.
trust() {
  local keyring=$root/etc/apt/keyrings/$1.gpg url=$2 want=$3 tmp
  if [[ -f $keyring ]] && has_key "$keyring" "$want"; then
    return 0
  fi
  tmp=$(mktemp)
  curl -fsSL --retry 5 --retry-all-errors -o "$tmp" "$url"
  if ! has_key "$tmp" "$want"; then
    rm -f "$tmp"
    echo "lok8s-node-setup: the key at $url is not $want: refusing it" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$keyring")"
  gpg --batch --yes --dearmor -o "$keyring" "$tmp"
  chmod 0644 "$keyring"
  rm -f "$tmp"
}

if ! command -v curl >/dev/null || ! command -v gpg >/dev/null; then
  apt_get update
  apt_get install ca-certificates curl gpg
fi
arch=$(dpkg --print-architecture)
# shellcheck disable=SC1091 # the node's own
codename=$(. "$root/etc/os-release" && echo "$VERSION_CODENAME")

packages=() hold=() configure_containerd=false
if ! installed; then
  trust kubernetes "https://pkgs.k8s.io/core:/stable:/$minor/deb/Release.key" "$kubernetes_key"
  write /etc/apt/sources.list.d/lok8s-kubernetes.list <<EOF || true
deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/$minor/deb/ /
EOF
  packages+=("kubelet=$package_version-*" "kubeadm=$package_version-*" "kubectl=$package_version-*")
  hold+=(kubelet kubeadm kubectl)
fi
if ! runtime; then
  trust docker https://download.docker.com/linux/ubuntu/gpg "$docker_key"
  write /etc/apt/sources.list.d/lok8s-docker.list <<EOF || true
deb [arch=$arch signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/ubuntu $codename stable
EOF
  packages+=("containerd.io=$containerd_versions")
  configure_containerd=true
fi

log "installing ${packages[*]}"
apt_get update
apt_get install --allow-change-held-packages --allow-downgrades "${packages[@]}"
if ((${#hold[@]})); then
  apt-mark hold "${hold[@]}" >/dev/null
fi

# containerd: the CRI plugin on (Docker's package turns it off), runc with
# the systemd cgroup driver, as kubeadm configures the kubelet. A runtime
# the image brings keeps its configuration if it has that driver.
if ! grep -Eqs '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' "$root/etc/containerd/config.toml"; then
  configure_containerd=true
fi
if $configure_containerd && write /etc/containerd/config.toml <<'EOF'; then
# Written by lok8s-node-setup: containerd 2 (config version 3) for the
# kubelet. Everything not set here is containerd's default.
version = 3

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = true
EOF
  systemctl restart containerd
fi
systemctl enable --now containerd
systemctl enable kubelet

if ! installed; then
  echo "lok8s-node-setup: kubeadm and kubelet are not $version after installing" >&2
  exit 1
fi
log "kubeadm and kubelet $version, containerd $(containerd --version | awk '{print $3}')"
