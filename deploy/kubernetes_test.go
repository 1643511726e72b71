package deploy_test

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"gopkg.in/yaml.v3"

	"github.com/weir-metrics/weir/pkg/auth"
	"github.com/weir-metrics/weir/pkg/pipeline"
)

// kubernetesUID is the user weir's pods run as; the image's USER.
const kubernetesUID = 10001

// strictDecoder decodes Kubernetes YAML into the API types of k8s.io/api,
// failing on unknown or duplicate fields as `kubectl apply
// --validate=strict` does.
var strictDecoder = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

func decodeStrict(doc []byte) (runtime.Object, error) {
	obj, _, err := strictDecoder.Decode(doc, nil, nil)
	return obj, err
}

var kustomizations = []string{"base", "overlays/dev", "overlays/production"}

// TestKubernetesManifestFilesDecodeStrictly decodes every manifest and
// patch file each kustomization names, as written, before kustomize
// touches it.
func TestKubernetesManifestFilesDecodeStrictly(t *testing.T) {
	n := 0
	for _, dir := range kustomizations {
		var k struct {
			Resources []string `yaml:"resources"`
			Patches   []struct {
				Path string `yaml:"path"`
			} `yaml:"patches"`
		}
		if err := yaml.Unmarshal(readFile(t, repoPath("deploy", "kubernetes", dir, "kustomization.yaml")), &k); err != nil {
			t.Fatal(err)
		}
		files := k.Resources
		for _, p := range k.Patches {
			files = append(files, p.Path)
		}
		for _, f := range files {
			path := repoPath("deploy", "kubernetes", dir, f)
			if st, err := os.Stat(path); err != nil {
				t.Errorf("%s names %s: %v", dir, f, err)
				continue
			} else if st.IsDir() {
				continue // another kustomization, rendered on its own
			}
			for i, doc := range splitYAMLDocuments(readFile(t, path)) {
				if _, err := decodeStrict(doc); err != nil {
					t.Errorf("%s document %d: %v", path, i+1, err)
				}
				n++
			}
		}
	}
	if n < 10 {
		t.Errorf("decoded only %d manifests", n)
	}
}

// rendered is one kustomization built: its objects by kind and name.
type rendered struct {
	dir          string
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	accounts     map[string]*corev1.ServiceAccount
	namespaces   map[string]bool
}

// render builds a kustomization with kustomize's own library and decodes
// each resulting object strictly.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), repoPath("deploy", "kubernetes", dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{
		dir:          dir,
		deployments:  map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		services:     map[string]*corev1.Service{},
		hpas:         map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		configMaps:   map[string]*corev1.ConfigMap{},
		secrets:      map[string]*corev1.Secret{},
		accounts:     map[string]*corev1.ServiceAccount{},
		namespaces:   map[string]bool{},
	}
	for _, res := range resources.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decodeStrict(y)
		if err != nil {
			t.Errorf("%s: %s %s: %v", dir, res.GetKind(), res.GetName(), err)
			continue
		}
		r.namespaces[res.GetNamespace()] = true
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			r.statefulSets[o.Name] = o
		case *corev1.Service:
			r.services[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.pdbs[o.Name] = o
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		case *corev1.ServiceAccount:
			r.accounts[o.Name] = o
		default:
			t.Errorf("%s: unexpected %T", dir, obj)
		}
	}
	return r
}

// workload is a pod template with where it came from.
type workload struct {
	kind, name, target string
	replicas           *int32
	template           corev1.PodTemplateSpec
	claims             map[string]bool
}

func (r *rendered) workloads() []workload {
	var out []workload
	for _, d := range r.deployments {
		out = append(out, workload{kind: "Deployment", name: d.Name, target: d.Spec.Template.Labels["app.kubernetes.io/component"], replicas: d.Spec.Replicas, template: d.Spec.Template})
	}
	for _, s := range r.statefulSets {
		w := workload{kind: "StatefulSet", name: s.Name, target: s.Spec.Template.Labels["app.kubernetes.io/component"], replicas: s.Spec.Replicas, template: s.Spec.Template, claims: map[string]bool{}}
		for _, c := range s.Spec.VolumeClaimTemplates {
			w.claims[c.Name] = true
		}
		out = append(out, w)
	}
	return out
}

func TestKubernetesKustomizations(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			checkShape(t, r)
			for _, w := range r.workloads() {
				checkWorkload(t, r, w)
			}
			checkServices(t, r)
			if dir != "base" && (len(r.namespaces) != 1 || r.namespaces[""]) {
				t.Errorf("objects are not all in the overlay's namespace: %v", r.namespaces)
			}
		})
	}
}

// checkShape checks the list: edge as Deployment + HPA + Service,
// stream as Deployment, sink as StatefulSet with volumes, configuration as
// ConfigMap and credentials as Secret.
func checkShape(t *testing.T, r *rendered) {
	t.Helper()
	edge, ok := r.deployments["weir-edge"]
	if !ok {
		t.Fatal("no Deployment weir-edge")
	}
	hpa, ok := r.hpas["weir-edge"]
	if !ok {
		t.Fatal("no HorizontalPodAutoscaler for the edge")
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != edge.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("the edge HPA scales %s/%s %s, not the edge Deployment", ref.APIVersion, ref.Kind, ref.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 1 || *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas {
		t.Errorf("HPA bounds %v..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if edge.Spec.Replicas != nil && hpa.Spec.MinReplicas != nil && (*edge.Spec.Replicas < *hpa.Spec.MinReplicas || *edge.Spec.Replicas > hpa.Spec.MaxReplicas) {
		t.Errorf("edge replicas %d outside the HPA's %d..%d", *edge.Spec.Replicas, *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if len(hpa.Spec.Metrics) == 0 {
		t.Error("the edge HPA has no metric to scale on")
	}
	for _, c := range edge.Spec.Template.Spec.Containers {
		if hpa.Spec.Metrics[0].Resource != nil && c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("container %s has no CPU request: a CPU-utilization HPA cannot work", c.Name)
		}
	}
	if _, ok := r.services["weir-edge"]; !ok {
		t.Error("no Service weir-edge")
	}
	if _, ok := r.deployments["weir-stream"]; !ok {
		t.Error("no Deployment weir-stream")
	}
	sink, ok := r.statefulSets["weir-sink"]
	if !ok {
		t.Fatal("no StatefulSet weir-sink")
	}
	if len(sink.Spec.VolumeClaimTemplates) == 0 {
		t.Error("the sink StatefulSet claims no volume")
	}
	for _, c := range sink.Spec.VolumeClaimTemplates {
		if c.Spec.Resources.Requests.Storage().IsZero() {
			t.Errorf("claim %s requests no storage", c.Name)
		}
	}
	headless, ok := r.services[sink.Spec.ServiceName]
	if !ok || headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("the sink's serviceName %q is not a headless Service", sink.Spec.ServiceName)
	}
	if len(r.configMaps) == 0 || len(r.secrets) == 0 {
		t.Error("configuration and credentials must come as a ConfigMap and a Secret")
	}
}

func checkWorkload(t *testing.T, r *rendered, w workload) {
	t.Helper()
	spec := w.template.Spec
	where := w.kind + " " + w.name
	if sa := spec.ServiceAccountName; sa != "" && r.accounts[sa] == nil {
		t.Errorf("%s runs as ServiceAccount %s, which is not defined", where, sa)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != kubernetesUID {
		t.Errorf("%s must run as non-root user %d (the image's USER)", where, kubernetesUID)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		if v.ConfigMap != nil && r.configMaps[v.ConfigMap.Name] == nil {
			t.Errorf("%s mounts ConfigMap %s, which is not defined", where, v.ConfigMap.Name)
		}
		if v.Secret != nil && r.secrets[v.Secret.SecretName] == nil {
			t.Errorf("%s mounts Secret %s, which is not defined", where, v.Secret.SecretName)
		}
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: want one container, got %d", where, len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != w.target {
		t.Errorf("%s runs weir %v, want the %s target", where, c.Args, w.target)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	httpPort, ok := ports["http"]
	if !ok {
		t.Fatalf("%s has no port named http", where)
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s has no HTTP %s probe", where, name)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s %s probe asks %s, want %s", where, name, p.HTTPGet.Path, path)
		}
		if port := resolvePort(p.HTTPGet.Port, ports); port != httpPort {
			t.Errorf("%s %s probe asks port %v, weir listens on %d", where, name, p.HTTPGet.Port.String(), httpPort)
		}
	}
	probe("readiness", c.ReadinessProbe, "/-/ready")
	probe("liveness", c.LivenessProbe, "/-/healthy")
	if c.StartupProbe != nil {
		probe("startup", c.StartupProbe, "/-/healthy")
	}
	mounts := map[string]string{} // path → volume
	for _, m := range c.VolumeMounts {
		_, isVolume := volumes[m.Name]
		if !isVolume && !w.claims[m.Name] {
			t.Errorf("%s mounts %s, which is neither a volume nor a claim", where, m.Name)
		}
		mounts[m.MountPath] = m.Name
	}
	if w.target == "sink" {
		if v, ok := volumes[mounts["/var/lib/weir"]]; ok || !w.claims[mounts["/var/lib/weir"]] {
			t.Errorf("the sink's data must be on its claimed volume, not %+v", v)
		}
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("%s: root filesystem should be read-only", where)
	}

	// The configuration, as the container sees it: the mounted file and
	// the environment.
	envs := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			envs[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			if e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("%s: %s from %s", where, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			envs[e.Name] = w.name + "-0"
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := r.secrets[ref.Name]
			if s == nil {
				t.Errorf("%s: %s from Secret %s, which is not defined", where, e.Name, ref.Name)
				continue
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				v, ok = []byte(s.StringData[ref.Key]), s.StringData[ref.Key] != ""
			}
			if !ok {
				t.Errorf("%s: %s from key %s, which Secret %s does not have", where, e.Name, ref.Key, ref.Name)
			}
			envs[e.Name] = string(v)
		default:
			t.Errorf("%s: %s comes from an unsupported source", where, e.Name)
		}
	}
	cfgPath := configArg(c.Args)
	dir, file := filepath.Split(cfgPath)
	vol, ok := volumes[mounts[filepath.Clean(dir)]]
	if !ok || vol.ConfigMap == nil {
		t.Fatalf("%s reads %s, which no ConfigMap mount provides", where, cfgPath)
	}
	cm := r.configMaps[vol.ConfigMap.Name]
	if cm == nil || cm.Data[file] == "" {
		t.Fatalf("%s reads %s, which ConfigMap %s does not hold", where, cfgPath, vol.ConfigMap.Name)
	}
	tmp := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(tmp, []byte(cm.Data[file]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := loadWeirConfig(t, tmp, envs)
	_, port, _ := net.SplitHostPort(cfg.HTTP.Addr)
	if port != strconv.Itoa(int(httpPort)) {
		t.Errorf("%s: weir listens on %s, the container port is %d", where, cfg.HTTP.Addr, httpPort)
	}
	if host, _, _ := net.SplitHostPort(cfg.HTTP.Addr); host != "0.0.0.0" && host != "" {
		t.Errorf("%s: weir listens on %s, unreachable from the kubelet and Services", where, cfg.HTTP.Addr)
	}
	if len(cfg.Kafka.Brokers) == 0 {
		t.Errorf("%s: no kafka.brokers; Kubernetes runs no embedded broker", where)
	}
	if _, ok := mounts[cfg.DataDir]; !ok {
		t.Errorf("%s: data_dir %s is not a mounted volume (the root filesystem is read-only)", where, cfg.DataDir)
	}
	if w.target != "stream" && cfg.Auth.TenantsFile != "" {
		// The tenants file must be mounted and load as weir loads it.
		dir, name := filepath.Split(cfg.Auth.TenantsFile)
		files := mountedFiles(t, r, volumes, mounts, filepath.Clean(dir))
		if files[name] == "" {
			t.Errorf("%s: auth.tenants_file %s is not mounted", where, cfg.Auth.TenantsFile)
		} else {
			tmp := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(tmp, []byte(files[name]), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := auth.New(auth.Options{TenantsFile: tmp, ReloadInterval: time.Second}); err != nil {
				t.Errorf("%s: the tenants file does not load: %v", where, err)
			}
		}
	}
	switch w.target {
	case "stream":
		if envs["WEIR_STREAM_INSTANCE_ID"] == "" {
			t.Errorf("%s: each stream worker needs its own stream.instance_id", where)
		}
		// The pipelines must be mounted and load as the stream loads
		// them.
		files := mountedFiles(t, r, volumes, mounts, filepath.Clean(cfg.Stream.PipelinesDir))
		if files["default.yaml"] == "" {
			t.Errorf("%s: stream.pipelines_dir %s has no default.yaml", where, cfg.Stream.PipelinesDir)
		}
		tmp := t.TempDir()
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(tmp, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pipeline.LoadDir(tmp); err != nil {
			t.Errorf("%s: the pipelines do not load: %v", where, err)
		}
	case "sink":
		if envs["WEIR_SINK_INSTANCE_ID"] == "" {
			t.Errorf("%s: each sink needs its own, stable sink.instance_id", where)
		}
		if cfg.Bucket.Backend == "s3" && (cfg.Bucket.S3.AccessKey == "" || cfg.Bucket.S3.SecretKey == "") {
			t.Errorf("%s: S3 credentials are not set", where)
		}
	}
}

// mountedFiles returns the files a container sees in dir when a
// ConfigMap or Secret volume is mounted there.
func mountedFiles(t *testing.T, r *rendered, volumes map[string]corev1.Volume, mounts map[string]string, dir string) map[string]string {
	t.Helper()
	v, ok := volumes[mounts[dir]]
	if !ok {
		return nil
	}
	out := map[string]string{}
	switch {
	case v.ConfigMap != nil:
		if cm := r.configMaps[v.ConfigMap.Name]; cm != nil {
			maps.Copy(out, cm.Data)
		}
	case v.Secret != nil:
		if s := r.secrets[v.Secret.SecretName]; s != nil {
			for k, b := range s.Data {
				out[k] = string(b)
			}
			maps.Copy(out, s.StringData)
		}
	}
	return out
}

func resolvePort(p intstr.IntOrString, named map[string]int32) int32 {
	if p.Type == intstr.String {
		return named[p.StrVal]
	}
	return p.IntVal
}

// checkServices checks every Service and PodDisruptionBudget selects the
// pods of a workload and every Service port reaches a container port.
func checkServices(t *testing.T, r *rendered) {
	t.Helper()
	matches := func(sel map[string]string) *workload {
		for _, w := range r.workloads() {
			ok := len(sel) > 0
			for k, v := range sel {
				if w.template.Labels[k] != v {
					ok = false
				}
			}
			if ok {
				return &w
			}
		}
		return nil
	}
	for _, s := range r.services {
		w := matches(s.Spec.Selector)
		if w == nil {
			t.Errorf("Service %s selects no pods (%v)", s.Name, s.Spec.Selector)
			continue
		}
		ports := map[string]int32{}
		for _, p := range w.template.Spec.Containers[0].Ports {
			ports[p.Name] = p.ContainerPort
		}
		for _, p := range s.Spec.Ports {
			if resolvePort(p.TargetPort, ports) == 0 {
				t.Errorf("Service %s port %s targets %s, which %s does not expose", s.Name, p.Name, p.TargetPort.String(), w.name)
			}
		}
	}
	for _, p := range r.pdbs {
		if p.Spec.Selector == nil || matches(p.Spec.Selector.MatchLabels) == nil {
			t.Errorf("PodDisruptionBudget %s selects no pods", p.Name)
		}
	}
	for _, w := range r.workloads() {
		var sel map[string]string
		if d, ok := r.deployments[w.name]; ok && w.kind == "Deployment" {
			sel = d.Spec.Selector.MatchLabels
		} else if s, ok := r.statefulSets[w.name]; ok {
			sel = s.Spec.Selector.MatchLabels
		}
		for k, v := range sel {
			if w.template.Labels[k] != v {
				t.Errorf("%s %s: selector %s=%s does not match its own pods", w.kind, w.name, k, v)
			}
		}
	}
}

// TestKubernetesOverlaysChangeWhatTheySay makes sure each overlay's
// patches took effect (a patch whose target name is wrong fails the build;
// one whose fields are misplaced silently does nothing).
func TestKubernetesOverlaysChangeWhatTheySay(t *testing.T) {
	base, dev, prod := render(t, "base"), render(t, "overlays/dev"), render(t, "overlays/production")
	replicas := func(r *rendered, name string) string {
		if d := r.deployments[name]; d != nil && d.Spec.Replicas != nil {
			return fmt.Sprint(*d.Spec.Replicas)
		}
		return "unset"
	}
	storage := func(r *rendered) string {
		return r.statefulSets["weir-sink"].Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String()
	}
	for _, c := range []struct{ what, base, dev, prod string }{
		{"stream replicas", replicas(base, "weir-stream"), replicas(dev, "weir-stream"), replicas(prod, "weir-stream")},
		{"edge HPA max", fmt.Sprint(base.hpas["weir-edge"].Spec.MaxReplicas), fmt.Sprint(dev.hpas["weir-edge"].Spec.MaxReplicas), fmt.Sprint(prod.hpas["weir-edge"].Spec.MaxReplicas)},
		{"sink storage", storage(base), storage(dev), storage(prod)},
	} {
		if c.base == c.dev || c.base == c.prod {
			t.Errorf("%s: base %s, dev %s, production %s: an overlay's patch did not apply", c.what, c.base, c.dev, c.prod)
		}
	}
	image := func(r *rendered) string { return r.deployments["weir-edge"].Spec.Template.Spec.Containers[0].Image }
	if image(dev) == image(base) || image(prod) == image(base) || strings.HasSuffix(image(prod), ":latest") {
		t.Errorf("images: base %s, dev %s, production %s", image(base), image(dev), image(prod))
	}
	// The claims' labels survive the overlays' replacement of the list.
	for _, r := range []*rendered{dev, prod} {
		if r.statefulSets["weir-sink"].Spec.VolumeClaimTemplates[0].Name != "data" {
			t.Errorf("%s: the sink's claim was renamed", r.dir)
		}
	}
}
