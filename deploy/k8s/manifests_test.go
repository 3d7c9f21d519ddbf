package k8s

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// manifests is every object in deploy/k8s/*.yaml, decoded strictly.
type manifests struct {
	configMaps []corev1.ConfigMap
	secrets    []corev1.Secret
	services   []corev1.Service
	sets       []appsv1.StatefulSet // the likesd pods: master and workers
	pdbs       []policyv1.PodDisruptionBudget
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var m manifests
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var meta metav1.TypeMeta
			require.NoError(t, yaml.Unmarshal([]byte(doc), &meta), "%s doc %d", f, i)
			where := fmt.Sprintf("%s doc %d (%s)", f, i, meta.Kind)
			doc := []byte(doc)
			switch meta.APIVersion + "/" + meta.Kind {
			case "v1/ConfigMap":
				m.configMaps = append(m.configMaps, strictDecode[corev1.ConfigMap](t, doc, where))
			case "v1/Secret":
				m.secrets = append(m.secrets, strictDecode[corev1.Secret](t, doc, where))
			case "v1/Service":
				m.services = append(m.services, strictDecode[corev1.Service](t, doc, where))
			case "apps/v1/StatefulSet":
				m.sets = append(m.sets, strictDecode[appsv1.StatefulSet](t, doc, where))
			case "policy/v1/PodDisruptionBudget":
				m.pdbs = append(m.pdbs, strictDecode[policyv1.PodDisruptionBudget](t, doc, where))
			default:
				t.Fatalf("%s: unexpected %s/%s", where, meta.APIVersion, meta.Kind)
			}
		}
	}
	return m
}

// strictDecode fails the test on unknown or duplicate fields.
func strictDecode[T any](t *testing.T, doc []byte, where string) T {
	t.Helper()
	var o T
	require.NoError(t, yaml.UnmarshalStrict(doc, &o), where)
	return o
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	var d appsv1.StatefulSet
	err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: StatefulSet\nspec:\n  replica: 3\n"), &d)
	require.Error(t, err, "a typo'd field must fail, or the checks above prove nothing")
}

func (m manifests) set(t *testing.T, name string) appsv1.StatefulSet {
	for _, d := range m.sets {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no StatefulSet %s", name)
	return appsv1.StatefulSet{}
}

func TestTopology(t *testing.T) {
	m := load(t)
	master := m.set(t, "likes-master")
	worker := m.set(t, "likes-worker")
	assert.Equal(t, map[string]string{"application": "likes-distributed", "workertype": "master"}, master.Spec.Template.Labels)
	assert.Equal(t, map[string]string{"application": "likes-distributed", "workertype": "worker"}, worker.Spec.Template.Labels)
	// The Service that governs a StatefulSet's pod names is headless and
	// selects its pods.
	for _, d := range m.sets {
		s := m.service(t, d.Spec.ServiceName)
		assert.Equal(t, corev1.ClusterIPNone, s.Spec.ClusterIP, "%s: serviceName %s is headless", d.Name, s.Name)
		assert.Contains(t, m.selected(s), d.Name, "%s: serviceName %s selects its pods", d.Name, s.Name)
	}
	require.NotNil(t, master.Spec.Replicas)
	assert.EqualValues(t, 1, *master.Spec.Replicas, "one seed")

	for _, d := range m.sets {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		require.NoError(t, err)
		assert.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "%s: selector matches its template", d.Name)
	}
	require.Len(t, m.pdbs, 1)
	pdb := m.pdbs[0]
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	require.NoError(t, err)
	for _, d := range m.sets {
		assert.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "PDB %s selects %s: drains take one pod at a time", pdb.Name, d.Name)
	}
	require.NotNil(t, pdb.Spec.MaxUnavailable)
	assert.Equal(t, intstr.FromInt32(1), *pdb.Spec.MaxUnavailable)

	lb := m.service(t, "distributed-likes-service-cluster")
	assert.Equal(t, corev1.ServiceTypeLoadBalancer, lb.Spec.Type)
	assert.Equal(t, map[string]string{"application": "likes-distributed"}, lb.Spec.Selector)
	require.Len(t, lb.Spec.Ports, 1)
	assert.EqualValues(t, 80, lb.Spec.Ports[0].Port)
	assert.EqualValues(t, 31001, lb.Spec.Ports[0].NodePort)
	assert.Equal(t, []string{"likes-master", "likes-worker"}, m.selected(lb))

	assert.Equal(t, []string{"likes-master"}, m.selected(m.service(t, "likes-master-gossip")))
	assert.Equal(t, []string{"likes-master", "likes-worker"}, m.selected(m.service(t, "likes-gossip")), "likes-gossip reaches every pod")

	assert.Equal(t, []string{"likes-gossip:7946"}, joinTargets(t, master), "a restarted master finds the cluster through any pod")
	assert.Equal(t, []string{"likes-master-gossip:7946", "likes-gossip:7946"}, joinTargets(t, worker),
		"workers join every pod and keep the master as the anchor that heals a split")
}

// Every join target is a headless Service with publishNotReadyAddresses on
// the gossip port, TCP and UDP: DNS must answer with pod IPs (likesd checks
// that a seed's address is an alive member; a ClusterIP never is), and
// with pods that are not Ready yet (they are Ready only once joined).
func TestJoinTargetsAreHeadlessGossipServices(t *testing.T) {
	m := load(t)
	for _, d := range m.sets {
		for _, target := range joinTargets(t, d) {
			host, port, err := net.SplitHostPort(target)
			require.NoError(t, err, "%s: %s", d.Name, target)
			assert.Equal(t, "7946", port, "%s: %s", d.Name, target)
			s := m.service(t, host)
			assert.Equal(t, corev1.ClusterIPNone, s.Spec.ClusterIP, "%s is headless", host)
			assert.True(t, s.Spec.PublishNotReadyAddresses, "%s publishes pods that are not Ready", host)
			protocols := map[corev1.Protocol]int32{}
			for _, p := range s.Spec.Ports {
				protocols[p.Protocol] = p.Port
			}
			assert.Equal(t, map[corev1.Protocol]int32{corev1.ProtocolTCP: 7946, corev1.ProtocolUDP: 7946}, protocols, host)
		}
	}
}

// A rollout replaces one pod at a time, and the next only once the new one
// is Ready (joined, caught up): the readiness probe gates it. No partition
// holds pods back. A data dir has one process, so the old pod always stops
// before its replacement starts: there is no surge to ask for.
func TestRolloutsReplaceOnePodAtATime(t *testing.T) {
	m := load(t)
	require.Len(t, m.sets, 2)
	for _, d := range m.sets {
		require.Equal(t, appsv1.RollingUpdateStatefulSetStrategyType, d.Spec.UpdateStrategy.Type, d.Name)
		if ru := d.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			if ru.Partition != nil {
				assert.EqualValues(t, 0, *ru.Partition, "%s: a partition would leave pods on the old template", d.Name)
			}
			if ru.MaxUnavailable != nil {
				assert.Equal(t, intstr.FromInt32(1), *ru.MaxUnavailable, d.Name)
			}
		}
		require.NotNil(t, d.Spec.Template.Spec.Containers[0].ReadinessProbe, "%s: readiness gates the rollout", d.Name)
	}
}

// Scaling the workers down stops one pod at a time, each only once the one
// before has exited (OrderedReady): with w >= 2, a stopping worker is never
// the only pod left holding an acknowledged like. Parallel would stop every
// surplus pod at once.
func TestWorkersScaleDownOneAtATime(t *testing.T) {
	m := load(t)
	assert.Equal(t, appsv1.OrderedReadyPodManagement, m.set(t, "likes-worker").Spec.PodManagementPolicy)
	acks, err := strconv.Atoi(m.config()["LIKESD_WRITE_ACKS"])
	require.NoError(t, err, "LIKESD_WRITE_ACKS is a number of pods")
	assert.GreaterOrEqual(t, acks, 2, "an acknowledged like is on two pods: one stopping pod is never its only holder")
}

// Every pod writes its data dir on a volume of its own: LIKESD_DATA_DIR is
// the mount of a volumeClaimTemplate (a PVC per pod, which follows the pod's
// name), never a pod volume (an emptyDir dies with the pod) nor read-only.
// The claims ask the cluster's default StorageClass (no storageClassName:
// provider-neutral), are ReadWriteOnce (one pod, one writer), and are kept
// when the StatefulSet scales down or is deleted. The volume is writable by
// the container's user through fsGroup: a new volume's root is root's.
func TestEveryPodWritesItsDataDirOnAVolumeOfItsOwn(t *testing.T) {
	m := load(t)
	dir := m.config()["LIKESD_DATA_DIR"]
	require.NotEmpty(t, dir, "the ConfigMap sets LIKESD_DATA_DIR")
	assert.True(t, filepath.IsAbs(dir), dir)
	for _, d := range m.sets {
		spec := d.Spec.Template.Spec
		c := spec.Containers[0]
		assert.Empty(t, envValue(t, d, "LIKESD_DATA_DIR"), "%s: one data dir setting, the ConfigMap's", d.Name)
		var mount *corev1.VolumeMount
		for i, vm := range c.VolumeMounts {
			if vm.MountPath == dir {
				mount = &c.VolumeMounts[i]
			}
		}
		require.NotNil(t, mount, "%s: nothing mounted at the data dir %s (the read-only root file system would refuse it)", d.Name, dir)
		assert.False(t, mount.ReadOnly, d.Name)
		assert.Empty(t, mount.SubPath, d.Name)
		for _, v := range spec.Volumes {
			assert.NotEqual(t, mount.Name, v.Name, "%s: the data dir is a pod volume (%s): it would not outlive the pod", d.Name, v.Name)
		}
		var claim *corev1.PersistentVolumeClaim
		for i, pvc := range d.Spec.VolumeClaimTemplates {
			if pvc.Name == mount.Name {
				claim = &d.Spec.VolumeClaimTemplates[i]
			}
		}
		require.NotNil(t, claim, "%s: the data dir's volume %s is no volumeClaimTemplate", d.Name, mount.Name)
		assert.Nil(t, claim.Spec.StorageClassName, "%s: the default StorageClass unless the user sets one", d.Name)
		assert.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, claim.Spec.AccessModes, d.Name)
		size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
		assert.False(t, size.IsZero(), "%s: the claim asks for a size", d.Name)
		assert.Equal(t, "likes-distributed", claim.Labels["application"], "%s: kubectl get pvc -l application=likes-distributed lists it", d.Name)

		p := d.Spec.PersistentVolumeClaimRetentionPolicy
		require.NotNil(t, p, "%s: what happens to the volumes is said, not defaulted", d.Name)
		assert.Equal(t, appsv1.RetainPersistentVolumeClaimRetentionPolicyType, p.WhenScaled, "%s: scaling up again finds the volume", d.Name)
		assert.Equal(t, appsv1.RetainPersistentVolumeClaimRetentionPolicyType, p.WhenDeleted, "%s: make down keeps the data", d.Name)

		psc := spec.SecurityContext
		require.NotNil(t, psc, d.Name)
		require.NotNil(t, psc.FSGroup, "%s: without fsGroup uid %v cannot write the new volume", d.Name, psc.RunAsUser)
		assert.Equal(t, psc.RunAsGroup, psc.FSGroup, "%s: the volume's group is the container's", d.Name)
		require.NotNil(t, psc.FSGroupChangePolicy, d.Name)
		assert.Equal(t, corev1.FSGroupChangeOnRootMismatch, *psc.FSGroupChangePolicy, "%s: no walk over every file at every start", d.Name)
	}
}

func joinTargets(t *testing.T, d appsv1.StatefulSet) []string {
	v := envValue(t, d, "LIKESD_JOIN")
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// config is every ConfigMap key: the settings every pod reads.
func (m manifests) config() map[string]string {
	cfg := map[string]string{}
	for _, cm := range m.configMaps {
		for k, v := range cm.Data {
			cfg[k] = v
		}
	}
	return cfg
}

func (m manifests) service(t *testing.T, name string) corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return corev1.Service{}
}

// selected names the StatefulSets whose pods s selects.
func (m manifests) selected(s corev1.Service) []string {
	var out []string
	for _, d := range m.sets {
		if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d.Name)
		}
	}
	return out
}

func TestServiceTargetPortsExistOnContainers(t *testing.T) {
	m := load(t)
	for _, s := range m.services {
		require.NotEmpty(t, m.selected(s), "Service %s selects no pods", s.Name)
		for _, d := range m.sets {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			for _, sp := range s.Spec.Ports {
				assert.True(t, hasPort(d.Spec.Template.Spec.Containers, sp.TargetPort, sp.Protocol),
					"Service %s port %s: target %s/%s is not a container port of %s", s.Name, sp.Name, sp.TargetPort.String(), sp.Protocol, d.Name)
			}
		}
	}
}

func hasPort(cs []corev1.Container, target intstr.IntOrString, proto corev1.Protocol) bool {
	for _, c := range cs {
		for _, p := range c.Ports {
			if p.Protocol != proto {
				continue
			}
			if (target.Type == intstr.String && p.Name == target.StrVal) ||
				(target.Type == intstr.Int && p.ContainerPort == target.IntVal) {
				return true
			}
		}
	}
	return false
}

func envValue(t *testing.T, d appsv1.StatefulSet, name string) string {
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// likesd is built once from the service module two directories up.
func likesd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "likesd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/likesd")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

func TestEveryLikesdVariableIsARealFlag(t *testing.T) {
	m := load(t)
	help, err := exec.Command(likesd(t), "--help").Output()
	require.NoError(t, err)
	known := map[string]bool{}
	for _, v := range regexp.MustCompile(`env (LIKESD_[A-Z_]+)`).FindAllStringSubmatch(string(help), -1) {
		known[v[1]] = true
	}
	require.Contains(t, known, "LIKESD_JOIN", "the help lists the variables")

	var used []string
	for _, cm := range m.configMaps {
		for k := range cm.Data {
			used = append(used, k)
		}
	}
	for _, d := range m.sets {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				used = append(used, e.Name)
			}
		}
	}
	require.NotEmpty(t, used)
	for _, name := range used {
		if strings.HasPrefix(name, "LIKESD_") {
			assert.True(t, known[name], "%s is not a likesd flag", name)
		}
	}
}

// likesd runs with the ConfigMap's settings (the key file and the data dir
// moved into a temporary directory): every value is one it accepts and its
// data dir opens. Probes and scrapes go to the admin port (--admin-addr),
// which serves them, and not to the API's, which then does not: the
// LoadBalancer, which exposes only the API's port, exposes none of them
// (issue #20, finding 4).
func TestProbesAndScrapesHitTheAdminPort(t *testing.T) {
	m := load(t)
	adminAddr := ""
	for _, cm := range m.configMaps {
		if v, ok := cm.Data["LIKESD_ADMIN_ADDR"]; ok {
			adminAddr = v
		}
	}
	_, adminPort, err := net.SplitHostPort(adminAddr)
	require.NoError(t, err, "the ConfigMap sets LIKESD_ADMIN_ADDR")

	bin := likesd(t)
	httpPort, adminLocal, gossipPort := freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(bin, "--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "--admin-addr", fmt.Sprintf("127.0.0.1:%d", adminLocal),
		"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", gossipPort), "--log-level", "error")
	tmp := t.TempDir()
	cfg := m.config()
	// The key deploy.sh makes: 32 random bytes, base64.
	key := make([]byte, 32)
	_, err = rand.Read(key)
	require.NoError(t, err)
	cfg["LIKESD_GOSSIP_KEY_FILE"] = filepath.Join(tmp, filepath.Base(cfg["LIKESD_GOSSIP_KEY_FILE"]))
	require.NoError(t, os.WriteFile(cfg["LIKESD_GOSSIP_KEY_FILE"], []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o400))
	cfg["LIKESD_DATA_DIR"] = filepath.Join(tmp, "data")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LIKESD_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	for k, v := range cfg {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The container's ports, as the test's process has them.
	local := map[int32]int{8080: httpPort}
	if p, err := strconv.Atoi(adminPort); err == nil {
		local[int32(p)] = adminLocal
	}
	status := func(port int, path string) int {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	for _, d := range m.sets {
		c := d.Spec.Template.Spec.Containers[0]
		portOf := func(target intstr.IntOrString) int32 {
			for _, p := range c.Ports {
				if (target.Type == intstr.String && p.Name == target.StrVal) || (target.Type == intstr.Int && p.ContainerPort == target.IntVal) {
					return p.ContainerPort
				}
			}
			return 0
		}
		var httpPortOK, adminPortOK bool
		for _, p := range c.Ports {
			httpPortOK = httpPortOK || (p.Name == "http" && p.ContainerPort == 8080)
			adminPortOK = adminPortOK || (p.Name == "admin" && fmt.Sprint(p.ContainerPort) == adminPort)
		}
		assert.True(t, httpPortOK, "%s: http is container port 8080, likesd's default", d.Name)
		assert.True(t, adminPortOK, "%s: admin is container port %s, LIKESD_ADMIN_ADDR's", d.Name, adminPort)

		for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			require.NotNil(t, probe, "%s: %s probe", d.Name, name)
			require.NotNil(t, probe.HTTPGet, "%s: %s probe is HTTP", d.Name, name)
			port := local[portOf(probe.HTTPGet.Port)]
			require.Equal(t, adminLocal, port, "%s: %s probe goes to the admin port", d.Name, name)
			require.Eventually(t, func() bool { return status(port, probe.HTTPGet.Path) == http.StatusOK },
				10*time.Second, 20*time.Millisecond, "%s: %s probe %s never answered 200: %s", d.Name, name, probe.HTTPGet.Path, &stderr)
			assert.Equal(t, http.StatusNotFound, status(httpPort, probe.HTTPGet.Path), "%s: %s probe's path is not on the API port", d.Name, name)
		}

		ann := d.Spec.Template.Annotations
		assert.Equal(t, "true", ann["prometheus.io/scrape"], "%s: scraped", d.Name)
		assert.Equal(t, adminPort, ann["prometheus.io/port"], "%s: scraped on the admin port", d.Name)
		assert.Equal(t, http.StatusOK, status(adminLocal, ann["prometheus.io/path"]), "%s: the scrape path is served", d.Name)
		assert.Equal(t, http.StatusNotFound, status(httpPort, ann["prometheus.io/path"]), "%s: and not on the API port", d.Name)
	}
	lb := m.service(t, "distributed-likes-service-cluster")
	for _, p := range lb.Spec.Ports {
		assert.Equal(t, intstr.FromString("http"), p.TargetPort, "the LoadBalancer exposes only the API")
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestPodsAreHardenedAndShutDownInTime(t *testing.T) {
	m := load(t)
	cfg := m.config()
	drain, err := time.ParseDuration(cfg["LIKESD_SHUTDOWN_DRAIN"])
	require.NoError(t, err)
	timeout, err := time.ParseDuration(cfg["LIKESD_SHUTDOWN_TIMEOUT"])
	require.NoError(t, err)
	handoff, err := time.ParseDuration(cfg["LIKESD_HANDOFF_TIMEOUT"])
	require.NoError(t, err)
	assert.Less(t, handoff, timeout, "the hand-off ends inside the shutdown bound, with time to leave")

	for _, d := range m.sets {
		spec := d.Spec.Template.Spec
		require.NotNil(t, spec.TerminationGracePeriodSeconds)
		// A preStop hook runs before SIGTERM, inside the same grace period.
		var preStop time.Duration
		if lc := spec.Containers[0].Lifecycle; lc != nil && lc.PreStop != nil {
			require.NotNil(t, lc.PreStop.Sleep, "%s: the image has no shell: only a sleep preStop can run", d.Name)
			preStop = time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
		}
		assert.GreaterOrEqual(t, time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second, preStop+drain+timeout,
			"%s: the grace period covers preStop, drain and shutdown (hand-off and leave)", d.Name)
		require.NotNil(t, spec.AutomountServiceAccountToken, d.Name)
		assert.False(t, *spec.AutomountServiceAccountToken, "%s: likesd needs no API token", d.Name)
		require.NotNil(t, spec.EnableServiceLinks, d.Name)
		assert.False(t, *spec.EnableServiceLinks, "%s: no injected Service variables", d.Name)
		assert.NotEqual(t, corev1.PullAlways, spec.Containers[0].ImagePullPolicy, "%s: a local image (minikube, k8s-e2e) is used as is", d.Name)
		require.NotNil(t, spec.SecurityContext)
		require.NotNil(t, spec.SecurityContext.RunAsNonRoot)
		assert.True(t, *spec.SecurityContext.RunAsNonRoot, d.Name)
		c := spec.Containers[0]
		require.NotNil(t, c.SecurityContext, d.Name)
		assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, d.Name)
		assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation, d.Name)
		assert.False(t, c.Resources.Requests.Cpu().IsZero(), d.Name)
		assert.False(t, c.Resources.Limits.Memory().IsZero(), d.Name)

		var advertise *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == "LIKESD_ADVERTISE_ADDR" {
				advertise = &c.Env[i]
			}
		}
		require.NotNil(t, advertise, d.Name)
		require.NotNil(t, advertise.ValueFrom)
		assert.Equal(t, "status.podIP", advertise.ValueFrom.FieldRef.FieldPath)
	}
}

// The key file likesd is told to read is a key of the Secret deploy.sh
// makes, mounted as a directory: the kubelet updates such a mount in place
// when the Secret changes (a key rotation, docs/deploy.md), and never one
// mounted with subPath, nor an environment variable. No manifest ships a
// key (issue #21, finding 3): anyone could read it.
func TestGossipKeyComesFromTheSecretDeployMakes(t *testing.T) {
	m := load(t)
	var keyFile string
	for _, cm := range m.configMaps {
		if v, ok := cm.Data["LIKESD_GOSSIP_KEY_FILE"]; ok {
			keyFile = v
		}
	}
	require.NotEmpty(t, keyFile)
	for _, s := range m.secrets {
		assert.Empty(t, s.Data, "Secret %s ships data", s.Name)
		assert.Empty(t, s.StringData, "Secret %s ships data", s.Name)
	}
	for _, d := range m.sets {
		spec := d.Spec.Template.Spec
		c := spec.Containers[0]
		for _, e := range c.Env {
			assert.False(t, e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil, "%s: %s from a Secret is never updated in a running pod", d.Name, e.Name)
			assert.NotEqual(t, "LIKESD_GOSSIP_KEY", e.Name, "%s: a key given as a value cannot be rotated", d.Name)
		}
		assert.Empty(t, c.EnvFrom[0].SecretRef, d.Name)
		found := false
		for _, vm := range c.VolumeMounts {
			if filepath.Dir(keyFile) != vm.MountPath {
				continue
			}
			assert.Empty(t, vm.SubPath, "%s: a subPath mount is never updated: the key could not be rotated", d.Name)
			assert.True(t, vm.ReadOnly, d.Name)
			for _, v := range spec.Volumes {
				if v.Name != vm.Name || v.Secret == nil {
					continue
				}
				assert.Equal(t, "likes-gossip-key", v.Secret.SecretName, "%s: the Secret deploy.sh makes", d.Name)
				for _, item := range v.Secret.Items {
					assert.Equal(t, item.Key, item.Path, "%s: an item renamed", d.Name)
				}
				found = true
			}
		}
		assert.True(t, found, "%s: %s is not in a mounted Secret", d.Name, keyFile)
	}
}

// fakeKubectl is a kubectl for deploy.sh that keeps the Secrets it is
// given in dir (one file each, what `create -f -` read) and answers
// everything else with success. It logs its arguments to dir/calls.
func fakeKubectl(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "kubectl")
	script := `#!/usr/bin/env bash
set -euo pipefail
dir=$(dirname "$0")
echo "$*" >> "$dir/calls"
case "$1 $2" in
"get secret")
  if [ -f "$dir/secret-$3" ]; then echo "secret/$3"; fi ;;
"create -f")
  doc=$(cat)
  name=$(sed -n 's/^  name: //p' <<<"$doc" | head -1)
  if [ -f "$dir/secret-$name" ]; then echo "AlreadyExists" >&2; exit 1; fi
  printf '%s\n' "$doc" > "$dir/secret-$name" ;;
esac
`
	require.NoError(t, os.WriteFile(path, []byte(script), 0o755))
	return path
}

func deployWith(t *testing.T, kubectl string) string {
	t.Helper()
	cmd := exec.Command("bash", "deploy.sh")
	cmd.Env = append(os.Environ(), "KUBECTL="+kubectl)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

func secretKey(t *testing.T, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	s := strictDecode[corev1.Secret](t, raw, file)
	assert.Equal(t, "likes-gossip-key", s.Name)
	assert.Equal(t, "likes-distributed", s.Labels["application"], "make down and kubectl -l find it")
	key, err := base64.StdEncoding.DecodeString(s.StringData["gossip.key"])
	require.NoError(t, err)
	return key
}

// deploy.sh makes the gossip key when there is none: 32 random bytes, new
// at every first deploy; it never overwrites one, neither its own from an
// earlier run nor the operator's (a rotation in progress).
func TestDeployScriptMakesAKeyOnceAndKeepsIt(t *testing.T) {
	a := t.TempDir()
	kubectl := fakeKubectl(t, a)
	out := deployWith(t, kubectl)
	assert.Contains(t, out, "making a random one")
	key := secretKey(t, filepath.Join(a, "secret-likes-gossip-key"))
	assert.Len(t, key, 32)
	assert.NotEqual(t, "bGlrZXNkLWRlbW8ta2V5LXJlcGxhY2UtbWUtcGxlYXM=", base64.StdEncoding.EncodeToString(key))
	calls, err := os.ReadFile(filepath.Join(a, "calls"))
	require.NoError(t, err)
	assert.NotContains(t, string(calls), base64.StdEncoding.EncodeToString(key), "the key is never on a command line")

	out = deployWith(t, kubectl)
	assert.Contains(t, out, "exists, kept")
	assert.Equal(t, key, secretKey(t, filepath.Join(a, "secret-likes-gossip-key")), "a second deploy keeps the key")

	// An operator's Secret (here: a keyring mid-rotation) is left alone.
	b := t.TempDir()
	mine := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: likes-gossip-key\n  labels:\n    application: likes-distributed\nstringData:\n  gossip.key: \"mine\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(b, "secret-likes-gossip-key"), []byte(mine), 0o600))
	deployWith(t, fakeKubectl(t, b))
	got, err := os.ReadFile(filepath.Join(b, "secret-likes-gossip-key"))
	require.NoError(t, err)
	assert.Equal(t, mine, string(got))

	c := t.TempDir()
	deployWith(t, fakeKubectl(t, c))
	assert.NotEqual(t, key, secretKey(t, filepath.Join(c, "secret-likes-gossip-key")), "every first deploy its own key")
}

// The kubelet writes Secret files owned by root:root with the volume's mode,
// or root:fsGroup (plus group read) when the pod sets fsGroup. A non-root
// container reads a file without "other" read bits only through fsGroup: the
// pods crashed on "open /etc/likesd/gossip.key: permission denied" without
// it. Guarded here for every Secret volume a non-root container mounts.
func TestSecretVolumesAreReadableByTheContainerUser(t *testing.T) {
	m := load(t)
	for _, d := range m.sets {
		spec := d.Spec.Template.Spec
		psc := spec.SecurityContext
		require.NotNil(t, psc, d.Name)
		for _, c := range spec.Containers {
			uid := psc.RunAsUser
			if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
				uid = c.SecurityContext.RunAsUser
			}
			require.NotNil(t, uid, "%s/%s: runAsUser is set (the image's user is not checked here)", d.Name, c.Name)
			for _, vm := range c.VolumeMounts {
				for _, v := range spec.Volumes {
					if v.Name != vm.Name || v.Secret == nil || *uid == 0 {
						continue
					}
					mode := int32(0o644) // the API's default
					if v.Secret.DefaultMode != nil {
						mode = *v.Secret.DefaultMode
					}
					for _, item := range v.Secret.Items {
						if item.Mode != nil && *item.Mode&0o004 == 0 {
							mode = *item.Mode // an item's own mode overrides the default
						}
					}
					if mode&0o004 != 0 {
						continue // world-readable
					}
					require.NotNil(t, psc.FSGroup, "%s: secret volume %s (mode %#o) is unreadable by uid %d without fsGroup", d.Name, v.Name, mode, *uid)
					assert.Equal(t, psc.RunAsGroup, psc.FSGroup, "%s: fsGroup is the group the container runs as", d.Name)
				}
			}
		}
	}
}

// deploy.sh (make run and make k8s-e2e) names its files one by one, in
// order: a new manifest must be added there too.
func TestDeployScriptAppliesEveryManifest(t *testing.T) {
	script, err := os.ReadFile("deploy.sh")
	require.NoError(t, err)
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	for _, f := range files {
		assert.Contains(t, string(script), `"$dir/`+f+`"`, "deploy.sh does not apply %s", f)
	}
}
