package capi_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The node setup script (templates/providers/hetzner/node-setup.sh) runs
// here with the commands it calls replaced by stubs that log their
// arguments, and its files written under LOK8S_NODE_ROOT.

const (
	kubernetesKey = "DE15B14486CD377B9E876E1A234654DA9A296436"
	dockerKey     = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
)

// stubs: every command logs "name args" to $CALLS. curl writes a "key"
// naming its URL; gpg reports the fingerprint that URL's key has
// ($BAD_KEY_URL's: another); apt-get install puts kubeadm, kubelet and
// containerd of the versions asked for on the PATH.
var stubs = map[string]string{
	"curl": `out=; url=; while [ $# -gt 0 ]; do case $1 in -o) out=$2; shift;; http*) url=$1;; esac; shift; done
echo "key from $url" > "$out"`,
	"gpg": `if [ "$1" = --show-keys ]; then f=$3
  case "$(cat "$f")" in
    *"$BAD_KEY_URL"*) [ -n "$BAD_KEY_URL" ] && { echo "fpr:::::::::0000000000000000000000000000000000000000:"; exit 0; } ;;
  esac
  case "$(cat "$f")" in
    *pkgs.k8s.io*) echo "pub:-:2048:1:234654DA9A296436:::::::scESC::::::23::0:"; echo "fpr:::::::::` + kubernetesKey + `:" ;;
    *docker.com*) echo "fpr:::::::::` + dockerKey + `:" ;;
  esac
else out=; in=; while [ $# -gt 0 ]; do case $1 in -o) out=$2; shift;; --*) ;; *) in=$1;; esac; shift; done; cp "$in" "$out"; fi`,
	"apt-get": `if [ "$1" = -q ]; then :; fi
for a in "$@"; do case $a in
  kubeadm=*) v=${a#kubeadm=}; v=${v%-\*}; printf '#!/bin/sh\necho v%s\n' "$v" > "$STUBS/kubeadm"; chmod +x "$STUBS/kubeadm";;
  kubelet=*) v=${a#kubelet=}; v=${v%-\*}; printf '#!/bin/sh\necho Kubernetes v%s\n' "$v" > "$STUBS/kubelet"; chmod +x "$STUBS/kubelet";;
  containerd.io=*) printf '#!/bin/sh\necho containerd containerd.io v2.1.5 abc\n' > "$STUBS/containerd"; chmod +x "$STUBS/containerd";;
esac; done`,
	"apt-mark":  ``,
	"systemctl": ``,
	"modprobe":  ``,
	"sysctl":    ``,
	"swapoff":   ``,
	"dpkg":      `echo arm64`,
}

type node struct {
	root, stubs, calls string
}

func newNode(t *testing.T) *node {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	n := &node{root: filepath.Join(dir, "root"), stubs: filepath.Join(dir, "bin"), calls: filepath.Join(dir, "calls")}
	for name, body := range stubs {
		writeFile(t, filepath.Join(n.stubs, name), "#!/bin/sh\necho \""+name+" $*\" >> \"$CALLS\"\n"+body+"\n")
		if err := os.Chmod(filepath.Join(n.stubs, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(n.root, "etc", "os-release"), "NAME=Ubuntu\nVERSION_CODENAME=noble\n")
	writeFile(t, filepath.Join(n.root, "etc", "fstab"), "LABEL=root / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n")
	writeFile(t, filepath.Join(dir, "lok8s-node-setup"), nodeSetupScript(t))
	return n
}

// image puts the image's own kubeadm, kubelet and containerd on the node.
func (n *node) image(t *testing.T, version string) {
	t.Helper()
	for name, out := range map[string]string{"kubeadm": version, "kubelet": "Kubernetes " + version, "containerd": "containerd github.com/containerd/containerd/v2 v2.0.5 x"} {
		writeFile(t, filepath.Join(n.stubs, name), "#!/bin/sh\necho "+out+"\n")
		if err := os.Chmod(filepath.Join(n.stubs, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs the script with version and returns its output and the
// commands it called since the last run.
func (n *node) run(t *testing.T, version string, env ...string) (string, []string, error) {
	t.Helper()
	_ = os.Remove(n.calls)
	cmd := exec.Command("bash", filepath.Join(filepath.Dir(n.root), "lok8s-node-setup"), version)
	cmd.Env = append([]string{"PATH=" + n.stubs + ":/usr/bin:/bin", "LOK8S_NODE_ROOT=" + n.root, "CALLS=" + n.calls, "STUBS=" + n.stubs, "TMPDIR=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	data, _ := os.ReadFile(n.calls)
	return string(out), strings.Split(strings.TrimSpace(string(data)), "\n"), err
}

func (n *node) read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.root, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func callsOf(calls []string, command string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, command+" ") || c == command {
			out = append(out, c)
		}
	}
	return out
}

// On Hetzner's stock image the script installs containerd 2 and kubelet,
// kubeadm and kubectl at the cluster's version from the pkgs.k8s.io
// repository of its minor (as CAPH's bases/hcloud-kcp-ubuntu.yaml does in
// preKubeadmCommands), trusting each repository's key only with its
// published fingerprint; it sets CAPH's kernel modules and sysctls, turns
// swap off and configures containerd with the systemd cgroup driver; run
// again, it changes nothing and installs nothing.
func TestNodeSetupInstallsOnTheStockImage(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	out, calls, err := n.run(t, "v1.35.4")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	installs := callsOf(calls, "apt-get")
	var install string
	for _, c := range installs {
		if strings.Contains(c, " install ") {
			install = c
		}
	}
	for _, want := range []string{"kubelet=1.35.4-*", "kubeadm=1.35.4-*", "kubectl=1.35.4-*", "containerd.io=2.*"} {
		if !strings.Contains(install, want) {
			t.Errorf("apt-get install %q lacks %s", install, want)
		}
	}
	if got := n.read(t, "etc/apt/sources.list.d/lok8s-kubernetes.list"); !strings.Contains(got, "https://pkgs.k8s.io/core:/stable:/v1.35/deb/ /") || !strings.Contains(got, "signed-by=/etc/apt/keyrings/kubernetes.gpg") {
		t.Errorf("kubernetes repository: %s", got)
	}
	if got := n.read(t, "etc/apt/sources.list.d/lok8s-docker.list"); !strings.Contains(got, "[arch=arm64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/ubuntu noble stable") {
		t.Errorf("docker repository: %s", got)
	}
	if got := callsOf(calls, "curl"); len(got) != 2 || !strings.Contains(got[0], "https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key") {
		t.Errorf("downloads: %v", got)
	}
	if got := callsOf(calls, "apt-mark"); len(got) != 1 || got[0] != "apt-mark hold kubelet kubeadm kubectl" {
		t.Errorf("apt-mark: %v", got)
	}
	// CAPH's modules and sysctls (bases/hcloud-kcp-ubuntu.yaml, kct-md-0-ubuntu.yaml).
	if got := n.read(t, "etc/modules-load.d/lok8s-kubernetes.conf"); got != "overlay\nbr_netfilter\n" {
		t.Errorf("modules: %q", got)
	}
	sysctls := n.read(t, "etc/sysctl.d/90-lok8s-kubernetes.conf")
	for _, want := range []string{"net.bridge.bridge-nf-call-iptables = 1", "net.bridge.bridge-nf-call-ip6tables = 1", "net.ipv4.ip_forward = 1",
		"net.ipv4.conf.lxc*.rp_filter = 0", "vm.overcommit_memory = 1", "kernel.panic = 10", "kernel.panic_on_oops = 1"} {
		if !strings.Contains(sysctls, want+"\n") {
			t.Errorf("sysctls lack %q:\n%s", want, sysctls)
		}
	}
	for _, want := range []string{"modprobe overlay", "modprobe br_netfilter", "sysctl --system", "swapoff -a", "systemctl restart containerd", "systemctl enable --now containerd", "systemctl enable kubelet"} {
		if !strings.Contains(strings.Join(calls, "\n")+"\n", want+"\n") {
			t.Errorf("did not run %q: %v", want, calls)
		}
	}
	if got := n.read(t, "etc/fstab"); !strings.Contains(got, "# /swapfile none swap") || !strings.Contains(got, "LABEL=root / ext4") {
		t.Errorf("fstab: %s", got)
	}
	if got := n.read(t, "etc/containerd/config.toml"); !strings.Contains(got, "version = 3") ||
		!strings.Contains(got, "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = true") {
		t.Errorf("containerd config:\n%s", got)
	}

	// Idempotent: the second run installs nothing and writes nothing new.
	before := snapshot(t, n.root)
	out, calls, err = n.run(t, "v1.35.4")
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if got := callsOf(calls, "apt-get"); len(got) != 0 || len(callsOf(calls, "curl")) != 0 {
		t.Errorf("second run installed or downloaded: %v", calls)
	}
	if after := snapshot(t, n.root); after != before {
		t.Errorf("second run changed files:\n%s\n---\n%s", before, after)
	}
}

// A node image (image-builder snapshot, spec.hcloud.image) that has
// kubeadm and kubelet at the cluster's version and a container runtime is
// left as it is; at another version, only Kubernetes is installed.
func TestNodeSetupSkipsAReadyImage(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	n.image(t, "v1.35.4")
	writeFile(t, filepath.Join(n.root, "etc", "containerd", "config.toml"), "version = 2\n# the image's own\n")
	out, calls, err := n.run(t, "v1.35.4")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := callsOf(calls, "apt-get"); len(got) != 0 || len(callsOf(calls, "curl")) != 0 {
		t.Errorf("installed on a ready image: %v", calls)
	}
	if !strings.Contains(out, "nothing to install") {
		t.Errorf("output: %s", out)
	}
	if got := n.read(t, "etc/containerd/config.toml"); got != "version = 2\n# the image's own\n" {
		t.Errorf("the image's containerd config changed: %s", got)
	}

	n = newNode(t)
	n.image(t, "v1.34.2")
	writeFile(t, filepath.Join(n.root, "etc", "containerd", "config.toml"), "[x]\n  SystemdCgroup = true\n")
	out, calls, err = n.run(t, "v1.35.4")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	install := strings.Join(callsOf(calls, "apt-get"), "\n")
	if !strings.Contains(install, "kubeadm=1.35.4-*") || strings.Contains(install, "containerd.io") {
		t.Errorf("image at v1.34.2: %s", install)
	}
	if got := n.read(t, "etc/containerd/config.toml"); got != "[x]\n  SystemdCgroup = true\n" {
		t.Errorf("a runtime with the systemd driver was reconfigured: %s", got)
	}
}

// A repository key whose fingerprint is not the published one is refused
// before apt trusts it; a version that is not vX.Y.Z is refused.
func TestNodeSetupRefusesAWrongKey(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	out, calls, err := n.run(t, "v1.35.4", "BAD_KEY_URL=pkgs.k8s.io")
	if err == nil || !strings.Contains(out, "is not "+kubernetesKey+": refusing it") {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
	if _, statErr := os.Stat(filepath.Join(n.root, "etc", "apt", "keyrings", "kubernetes.gpg")); statErr == nil {
		t.Error("the wrong key became a keyring")
	}
	if got := callsOf(calls, "apt-get"); len(got) != 0 {
		t.Errorf("apt-get ran: %v", got)
	}
	if out, _, err := n.run(t, "1.35"); err == nil || !strings.Contains(out, "not a version") {
		t.Errorf("version 1.35: %v %s", err, out)
	}
}

// snapshot lists every file under root with its content.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		b.WriteString(p + "\n" + string(data) + "\n")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
