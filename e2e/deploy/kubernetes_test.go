package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifest is one decoded document of deploy/kubernetes.
type manifest struct {
	file string
	obj  any // a pointer to the typed k8s.io/api object
}

// newObject maps apiVersion and kind to the Go type of the Kubernetes API; a kind the test
// does not know is an error, so a new manifest cannot slip past the strict decoding.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, nil
	}
	return nil, fmt.Errorf("unknown apiVersion/kind %s/%s", apiVersion, kind)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes every YAML document of data into its Kubernetes type, refusing unknown
// and duplicate fields.
func decodeStrict(file string, data []byte) ([]manifest, error) {
	var out []manifest
	for i, doc := range docSeparator.Split(string(data), -1) {
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // only comments
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i+1, err)
		}
		obj, err := newObject(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i+1, err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			return nil, fmt.Errorf("%s document %d (%s): %w", file, i+1, tm.Kind, err)
		}
		out = append(out, manifest{file: file, obj: obj})
	}
	return out, nil
}

func loadManifests(t *testing.T) []manifest {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "kubernetes")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	var all []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := decodeStrict(filepath.Base(f), b)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			t.Errorf("%s holds no manifest", f)
		}
		all = append(all, ms...)
	}
	return all
}

func collect[T any](ms []manifest) []*T {
	var out []*T
	for _, m := range ms {
		if o, ok := m.obj.(*T); ok {
			out = append(out, o)
		}
	}
	return out
}

// TestKubernetesStrictDecodingCatchesMisspelling proves the decoder used below refuses what
// the API server would refuse (or, worse, silently drop).
func TestKubernetesStrictDecodingCatchesMisspelling(t *testing.T) {
	t.Parallel()
	good := deployFile(t, "kubernetes/controlplane.yaml")
	if _, err := decodeStrict("controlplane.yaml", []byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to string }{
		{"readinessProbe:", "readinesProbe:"},
		{"replicas: 2", "replica: 2"},
		{"containerPort: 8080", "containerPort: \"eight\""},
		{"kind: PodDisruptionBudget", "kind: PodDisruptionBudgett"},
		{"  replicas: 2\n", "  replicas: 2\n  replicas: 3\n"},
	} {
		bad := strings.Replace(good, c.from, c.to, 1)
		if bad == good {
			t.Fatalf("%q is not in controlplane.yaml", c.from)
		}
		if _, err := decodeStrict("controlplane.yaml", []byte(bad)); err == nil {
			t.Errorf("replacing %q by %q still decodes", c.from, c.to)
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	ms := loadManifests(t)
	cpFlags, dnFlags := settingNames(t, bins.ControlPlane), settingNames(t, bins.DataNode)

	configMaps := map[string]*corev1.ConfigMap{}
	for _, c := range collect[corev1.ConfigMap](ms) {
		configMaps[c.Name] = c
	}
	secrets := map[string]*corev1.Secret{}
	for _, s := range collect[corev1.Secret](ms) {
		secrets[s.Name] = s
	}
	for _, m := range ms {
		if o, ok := m.obj.(metav1.Object); ok && m.obj != nil {
			if _, isNS := m.obj.(*corev1.Namespace); !isNS && o.GetNamespace() != "backup-repository" {
				t.Errorf("%s: %s is in namespace %q, want backup-repository", m.file, o.GetName(), o.GetNamespace())
			}
		}
	}

	type workload struct {
		kind, name string
		replicas   int32
		selector   *metav1.LabelSelector
		pod        corev1.PodTemplateSpec
		claims     []corev1.PersistentVolumeClaim
	}
	var workloads []workload
	for _, d := range collect[appsv1.Deployment](ms) {
		workloads = append(workloads, workload{"Deployment", d.Name, ptrValue(d.Spec.Replicas), d.Spec.Selector, d.Spec.Template, nil})
	}
	for _, s := range collect[appsv1.StatefulSet](ms) {
		workloads = append(workloads, workload{"StatefulSet", s.Name, ptrValue(s.Spec.Replicas), s.Spec.Selector, s.Spec.Template, s.Spec.VolumeClaimTemplates})
	}
	kinds := map[string]int{}
	for _, w := range workloads {
		kinds[w.kind]++
	}
	if kinds["Deployment"] != 1 || kinds["StatefulSet"] != 1 {
		t.Fatalf("want one Deployment (control plane) and one StatefulSet (data nodes), got %v", kinds)
	}

	for _, w := range workloads {
		where := w.kind + " " + w.name
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.pod.Labels)) {
			t.Errorf("%s: selector %v does not select its own pods %v", where, w.selector, w.pod.Labels)
		}
		pod := w.pod.Spec
		if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || ptrValue(sc.RunAsUser) != 65532 {
			t.Errorf("%s: pods must run as non-root user 65532 (the images' user)", where)
		}
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: want one container, got %d", where, len(pod.Containers))
		}
		c := pod.Containers[0]
		var flags map[string]bool
		switch {
		case strings.HasPrefix(c.Image, "backup-repository/controlplane:"):
			flags = cpFlags
			if w.kind != "Deployment" || w.replicas != 2 {
				t.Errorf("%s: the control plane runs as a Deployment of 2 replicas, got %d", where, w.replicas)
			}
		case strings.HasPrefix(c.Image, "backup-repository/datanode:"):
			flags = dnFlags
			if w.kind != "StatefulSet" || len(w.claims) == 0 {
				t.Errorf("%s: data nodes run as a StatefulSet with volumeClaimTemplates", where)
			}
		default:
			t.Fatalf("%s: unexpected image %q", where, c.Image)
		}

		// Probes on /livez and /readyz, on a port the container declares.
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, p := range []struct {
			name, path string
			probe      *corev1.Probe
		}{{"liveness", "/livez", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
			if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s: %s probe must GET %s", where, p.name, p.path)
				continue
			}
			if port := p.probe.HTTPGet.Port; port.StrVal != "" && !ports[port.StrVal] {
				t.Errorf("%s: %s probe uses port %q, which the container does not declare", where, p.name, port.StrVal)
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("%s: no %s request", where, r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				t.Errorf("%s: no %s limit", where, r)
			}
		}

		// Every setting the container gets is a real flag, and every reference resolves.
		settings := map[string]string{} // BR_* name -> value ("" when it comes from a Secret)
		for _, ef := range c.EnvFrom {
			switch {
			case ef.ConfigMapRef != nil:
				cm := configMaps[ef.ConfigMapRef.Name]
				if cm == nil {
					t.Errorf("%s: envFrom names ConfigMap %q, which no manifest defines", where, ef.ConfigMapRef.Name)
					continue
				}
				for k, v := range cm.Data {
					settings[k] = v
				}
			case ef.SecretRef != nil:
				s := secrets[ef.SecretRef.Name]
				if s == nil {
					t.Errorf("%s: envFrom names Secret %q, which no manifest defines", where, ef.SecretRef.Name)
					continue
				}
				for k := range s.StringData {
					settings[k] = ""
				}
			}
		}
		defined := map[string]bool{}
		for _, e := range c.Env {
			for _, ref := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(e.Value, -1) {
				if !defined[ref[1]] {
					t.Errorf("%s: %s refers to $(%s) before it is defined", where, e.Name, ref[1])
				}
			}
			defined[e.Name] = true
			if ref := envSecretRef(e); ref != nil {
				if s := secrets[ref.Name]; s == nil || !hasKey(s, ref.Key) {
					t.Errorf("%s: %s reads key %q of Secret %q, which does not exist", where, e.Name, ref.Key, ref.Name)
				}
			}
			if strings.HasPrefix(e.Name, "BR_") {
				settings[e.Name] = e.Value
			} else if !strings.HasPrefix(e.Name, "POD_") {
				t.Errorf("%s: unexpected variable %s", where, e.Name)
			}
		}
		var names []string
		for k := range settings {
			names = append(names, k)
			if !strings.HasPrefix(k, "BR_") {
				t.Errorf("%s: environment variable %s is not a BR_* setting", where, k)
			}
		}
		checkSettings(t, where, names, flags)

		// Files named by settings exist in the volumes mounted there.
		files := mountedFiles(t, where, pod, c, w.claims, secrets)
		for _, name := range []string{"BR_SIGNING_KEY", "BR_VERIFY_KEYS", "BR_DISKS", "BR_DATA_DIR"} {
			v, ok := settings[name]
			if !ok {
				continue
			}
			for _, p := range splitComma(v) {
				if !files[p] {
					t.Errorf("%s: %s names %s, which no volume mount provides (have %v)", where, name, p, keys(files))
				}
			}
		}
		if flags["BR_NODE_NAME"] && settings["BR_NODE_NAME"] == "" {
			t.Errorf("%s: BR_NODE_NAME must be set (each member needs a unique gossip name)", where)
		}
	}

	// Services and disruption budgets select pods of some workload; ports they target exist.
	selectsSome := func(sel labels.Selector) *workload {
		for i := range workloads {
			if sel.Matches(labels.Set(workloads[i].pod.Labels)) {
				return &workloads[i]
			}
		}
		return nil
	}
	services := map[string]*corev1.Service{}
	headless := 0
	for _, s := range collect[corev1.Service](ms) {
		services[s.Name] = s
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless++
		}
		w := selectsSome(labels.SelectorFromSet(s.Spec.Selector))
		if len(s.Spec.Selector) == 0 || w == nil {
			t.Errorf("Service %s selects no workload's pods", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.StrVal != "" && !slices.ContainsFunc(w.pod.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
				t.Errorf("Service %s targets port %q, which %s does not declare", s.Name, p.TargetPort.StrVal, w.name)
			}
		}
	}
	if headless < 2 {
		t.Errorf("want headless Services for gossip and for the data nodes, got %d", headless)
	}
	for _, ss := range collect[appsv1.StatefulSet](ms) {
		if s := services[ss.Spec.ServiceName]; s == nil || s.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("StatefulSet %s: serviceName %q is not a headless Service", ss.Name, ss.Spec.ServiceName)
		}
	}
	pdbs := collect[policyv1.PodDisruptionBudget](ms)
	if len(pdbs) == 0 {
		t.Error("no PodDisruptionBudget")
	}
	for _, p := range pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() || selectsSome(sel) == nil {
			t.Errorf("PodDisruptionBudget %s selects no workload's pods", p.Name)
		}
	}
	for _, ing := range collect[networkingv1.Ingress](ms) {
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				b := p.Backend.Service
				s := services[b.Name]
				if s == nil || !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == b.Port.Name }) {
					t.Errorf("Ingress %s: path %s goes to %s port %q, which does not exist", ing.Name, p.Path, b.Name, b.Port.Name)
				}
				if strings.HasPrefix(p.Path, "/internal") || p.Path == "/" {
					t.Errorf("Ingress %s routes %s: the internal API must stay unreachable from outside", ing.Name, p.Path)
				}
			}
		}
	}
}

// mountedFiles lists the paths the container can read: every key of a mounted Secret or
// ConfigMap (honouring items), and the mount path of every other volume and claim.
func mountedFiles(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, claims []corev1.PersistentVolumeClaim, secrets map[string]*corev1.Secret) map[string]bool {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	claimNames := map[string]bool{}
	for _, pvc := range claims {
		claimNames[pvc.Name] = true
	}
	files := map[string]bool{}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		switch {
		case ok && v.Secret != nil:
			s := secrets[v.Secret.SecretName]
			if s == nil {
				t.Errorf("%s: volume %s mounts Secret %q, which no manifest defines", where, m.Name, v.Secret.SecretName)
				continue
			}
			if len(v.Secret.Items) > 0 {
				for _, it := range v.Secret.Items {
					if !hasKey(s, it.Key) {
						t.Errorf("%s: volume %s projects key %q, which Secret %s lacks", where, m.Name, it.Key, s.Name)
					}
					files[path.Join(m.MountPath, it.Path)] = true
				}
			} else {
				for k := range s.StringData {
					files[path.Join(m.MountPath, k)] = true
				}
			}
		case ok:
			files[m.MountPath] = true
		case claimNames[m.Name]:
			files[m.MountPath] = true
		default:
			t.Errorf("%s: volumeMount %s names no volume or claim template", where, m.Name)
		}
	}
	return files
}

func envSecretRef(e corev1.EnvVar) *corev1.SecretKeySelector {
	if e.ValueFrom == nil {
		return nil
	}
	return e.ValueFrom.SecretKeyRef
}

func hasKey(s *corev1.Secret, key string) bool {
	_, a := s.StringData[key]
	_, b := s.Data[key]
	return a || b
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func splitComma(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
