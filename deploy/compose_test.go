package deploy_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	toml "github.com/pelletier/go-toml/v2"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"gopkg.in/yaml.v3"

	"github.com/weir-metrics/weir/pkg/kafka"
	"github.com/weir-metrics/weir/pkg/pipeline"
)

// weirTargets are the compose services that run weir, and the target each
// runs.
var weirTargets = map[string]string{"edge": "edge", "stream": "stream", "sink": "sink"}

// loadCompose loads docker-compose.yml with the compose-spec library, as
// `docker compose` does: schema validation, interpolation, merge keys,
// relative paths resolved against the repository.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{repoPath("docker-compose.yml")},
		cli.WithWorkingDirectory(repoPath()),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
		cli.WithEnv(nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func TestComposeLoadsAndHasTheStack(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"kafka", "minio", "minio-init", "edge", "stream", "sink", "prometheus", "telegraf", "grafana"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no service %q", name)
		}
	}
	for name, svc := range p.Services {
		if svc.Image == "" {
			t.Errorf("service %s names no image", name)
		}
		if svc.Image != "" && !strings.Contains(svc.Image, ":") {
			t.Errorf("service %s: image %s has no tag; pin one so the stack does not change under its users", name, svc.Image)
		}
		if strings.HasSuffix(svc.Image, ":latest") {
			t.Errorf("service %s: image %s is not pinned", name, svc.Image)
		}
	}
	// weir itself is built from the repository's Dockerfile.
	for name := range weirTargets {
		svc := p.Services[name]
		if svc.Build == nil {
			t.Errorf("service %s is not built from the repository", name)
			continue
		}
		if svc.Build.Context != repoPath() && filepath.Clean(svc.Build.Context) != filepath.Clean(repoPath()) {
			t.Errorf("service %s builds from %s, not the repository root", name, svc.Build.Context)
		}
		if _, err := os.Stat(filepath.Join(svc.Build.Context, svc.Build.Dockerfile)); err != nil {
			t.Errorf("service %s: Dockerfile: %v", name, err)
		}
	}
}

// TestComposeFilesExist checks every bind mount's source is in the
// repository, and that every file a container is told about (Grafana's
// home dashboard, the configs passed on command lines) is mounted.
func TestComposeFilesExist(t *testing.T) {
	p := loadCompose(t)
	for name, svc := range p.Services {
		for _, v := range svc.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s, which does not exist: %v", name, v.Source, err)
				}
				if !strings.HasPrefix(v.Source, repoPath()) && !strings.HasPrefix(v.Source, filepath.Clean(repoPath())) {
					t.Errorf("service %s mounts %s from outside the repository", name, v.Source)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("service %s uses volume %s, which is not declared", name, v.Source)
				}
			}
		}
		// Paths in the container named by the command or environment
		// must be provided by a mount.
		var paths []string
		for _, arg := range svc.Command {
			if strings.HasPrefix(arg, "/etc/") {
				paths = append(paths, arg)
			}
			if _, after, ok := strings.Cut(arg, "--config.file="); ok {
				paths = append(paths, after)
			}
		}
		for k, v := range svc.Environment {
			if v != nil && strings.HasSuffix(k, "_PATH") && strings.HasPrefix(*v, "/") {
				paths = append(paths, *v)
			}
		}
		for _, path := range paths {
			if hostPathOf(svc, path) == "" {
				t.Errorf("service %s refers to %s, which no bind mount provides", name, path)
			}
		}
	}
	// Every weir target reads the one stack configuration file, the one
	// `make stack` uses.
	for name := range weirTargets {
		svc := p.Services[name]
		cfg := configArg(svc.Command)
		if cfg == "" {
			t.Errorf("service %s runs weir without --config", name)
			continue
		}
		if got, want := hostPathOf(svc, cfg), repoPath("deploy", "compose", "weir.yaml"); filepath.Clean(got) != filepath.Clean(want) {
			t.Errorf("service %s reads %s from %s, want %s (the file make stack uses)", name, cfg, got, want)
		}
	}
}

// hostPathOf maps a path inside a service's container to the host file a
// bind mount provides, or "".
func hostPathOf(svc types.ServiceConfig, path string) string {
	for _, v := range svc.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if path == v.Target {
			return v.Source
		}
		if rel, ok := strings.CutPrefix(path, strings.TrimSuffix(v.Target, "/")+"/"); ok {
			p := filepath.Join(v.Source, rel)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return ""
}

func configArg(cmd types.ShellCommand) string {
	for i, a := range cmd {
		if a == "--config" && i+1 < len(cmd) {
			return cmd[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
	}
	return ""
}

func env(svc types.ServiceConfig, name string) string {
	if v := svc.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// TestComposeWeirConfiguration loads each weir service's configuration
// as weir would inside the container: the mounted file plus the service's
// WEIR_* variables, every one of which must be a real setting.
func TestComposeWeirConfiguration(t *testing.T) {
	p := loadCompose(t)
	kafkaSvc := p.Services["kafka"]
	for name, target := range weirTargets {
		t.Run(name, func(t *testing.T) {
			svc := p.Services[name]
			if len(svc.Command) == 0 || svc.Command[0] != target {
				t.Fatalf("service %s runs %v, want the %s target", name, svc.Command, target)
			}
			envs := map[string]string{}
			for k, v := range svc.Environment {
				if v == nil {
					t.Errorf("%s: %s has no value", name, k)
					continue
				}
				envs[k] = *v
			}
			cfg := loadWeirConfig(t, hostPathOf(svc, configArg(svc.Command)), envs)

			// The HTTP port is the one published, health-checked and
			// scraped.
			_, port, err := net.SplitHostPort(cfg.HTTP.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if host, _, _ := net.SplitHostPort(cfg.HTTP.Addr); host != "0.0.0.0" && host != "" {
				t.Errorf("%s listens on %s: other containers cannot reach it", name, cfg.HTTP.Addr)
			}
			published := false
			for _, pc := range svc.Ports {
				if strconv.Itoa(int(pc.Target)) == port {
					published = true
				}
			}
			if !published {
				t.Errorf("%s listens on port %s but publishes %v", name, port, svc.Ports)
			}
			if hc := svc.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), ":"+port+"/-/ready") {
				t.Errorf("%s: health check %v does not ask /-/ready on port %s", name, svc.HealthCheck, port)
			}

			// Brokers: the Kafka service's internal advertised listener.
			if len(cfg.Kafka.Brokers) == 0 {
				t.Fatalf("%s has no kafka.brokers: it would wait for an embedded broker", name)
			}
			advertised := env(kafkaSvc, "KAFKA_ADVERTISED_LISTENERS")
			for _, b := range cfg.Kafka.Brokers {
				if !strings.Contains(advertised, "://"+b) {
					t.Errorf("%s connects to %s, which Kafka does not advertise (%s)", name, b, advertised)
				}
				host, _, _ := net.SplitHostPort(b)
				if _, ok := p.Services[host]; !ok {
					t.Errorf("%s connects to %s: no service %s", name, b, host)
				}
			}
			// Kafka must accept weir's largest record.
			need := kafka.TopicMaxMessageBytes(cfg.Kafka.MaxRecordBytes)
			for _, k := range []string{"KAFKA_MESSAGE_MAX_BYTES", "KAFKA_REPLICA_FETCH_MAX_BYTES"} {
				v, err := strconv.Atoi(env(kafkaSvc, k))
				if err != nil || v < need {
					t.Errorf("kafka %s is %q; weir (kafka.max_record_bytes %d) needs at least %d", k, env(kafkaSvc, k), cfg.Kafka.MaxRecordBytes, need)
				}
			}
			dep, ok := svc.DependsOn["kafka"]
			if !ok || dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s does not wait for Kafka to be healthy: %+v", name, svc.DependsOn)
			}

			if target == "stream" {
				dir := hostPathOf(svc, cfg.Stream.PipelinesDir)
				if dir == "" {
					t.Fatalf("stream.pipelines_dir %s is not mounted", cfg.Stream.PipelinesDir)
				}
				if _, err := os.Stat(filepath.Join(dir, "default.yaml")); err != nil {
					t.Errorf("the stack's pipelines have no default.yaml: %v", err)
				}
				if _, err := pipeline.LoadDir(dir); err != nil {
					t.Errorf("the stack's pipelines do not load: %v", err)
				}
			}
			if cfg.Bucket.Backend == "s3" {
				checkMinIOBucket(t, p, name, cfg.Bucket.S3.Endpoint, cfg.Bucket.S3.Bucket, cfg.Bucket.S3.AccessKey, cfg.Bucket.S3.SecretKey)
			}
		})
	}
	// Each stream and sink keeps a stable identity across restarts.
	if env(p.Services["stream"], "WEIR_STREAM_INSTANCE_ID") == "" || env(p.Services["sink"], "WEIR_SINK_INSTANCE_ID") == "" {
		t.Error("stream and sink need a fixed instance ID, or a restarted container waits out its predecessor's session")
	}
	if p.Services["sink"].Environment["WEIR_BUCKET_BACKEND"] == nil {
		t.Error("the sink does not use MinIO")
	}
}

func checkMinIOBucket(t *testing.T, p *types.Project, name, endpoint, bucket, accessKey, secretKey string) {
	t.Helper()
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		t.Errorf("%s: bucket.s3.endpoint %q: %v", name, endpoint, err)
		return
	}
	minio, ok := p.Services[host]
	if !ok {
		t.Errorf("%s stores blocks at %s: no such service", name, endpoint)
		return
	}
	if !strings.Contains(strings.Join(minio.Command, " "), "server") {
		t.Errorf("service %s does not run a MinIO server: %v", host, minio.Command)
	}
	if port != "9000" {
		t.Errorf("%s: MinIO's S3 API listens on 9000, not %s", name, port)
	}
	if accessKey != env(minio, "MINIO_ROOT_USER") || secretKey != env(minio, "MINIO_ROOT_PASSWORD") {
		t.Errorf("%s's S3 credentials are not MinIO's", name)
	}
	init := p.Services["minio-init"]
	if env(init, "WEIR_BUCKET") != bucket {
		t.Errorf("minio-init creates bucket %q, %s uses %q", env(init, "WEIR_BUCKET"), name, bucket)
	}
	if !strings.Contains(strings.Join(init.Command, " "), "mc mb") || !strings.Contains(strings.Join(init.Command, " "), "http://"+endpoint) {
		t.Errorf("minio-init does not create the bucket at %s: %v", endpoint, init.Command)
	}
	if env(init, "MINIO_ROOT_USER") != env(minio, "MINIO_ROOT_USER") || env(init, "MINIO_ROOT_PASSWORD") != env(minio, "MINIO_ROOT_PASSWORD") {
		t.Error("minio-init logs in with other credentials than MinIO's")
	}
	dep, ok := p.Services[name].DependsOn["minio-init"]
	if !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("%s does not wait for its bucket to be created: %+v", name, p.Services[name].DependsOn)
	}
}

// TestComposeKafka checks the one-node KRaft broker: its listeners, its
// cluster ID and the settings weir's transactions need.
func TestComposeKafka(t *testing.T) {
	k := loadCompose(t).Services["kafka"]
	if !strings.HasPrefix(k.Image, "apache/kafka:") {
		t.Errorf("kafka runs %s, want apache/kafka", k.Image)
	}
	if env(k, "KAFKA_PROCESS_ROLES") != "broker,controller" {
		t.Errorf("KAFKA_PROCESS_ROLES = %q: one node must be broker and controller (KRaft)", env(k, "KAFKA_PROCESS_ROLES"))
	}
	id, err := base64.RawURLEncoding.DecodeString(env(k, "CLUSTER_ID"))
	if err != nil || len(id) != 16 {
		t.Errorf("CLUSTER_ID %q is not a base64url UUID (kafka-storage.sh refuses it)", env(k, "CLUSTER_ID"))
	}
	listeners := map[string]string{} // name → port
	for _, l := range strings.Split(env(k, "KAFKA_LISTENERS"), ",") {
		name, addr, ok := strings.Cut(l, "://")
		_, port, err := net.SplitHostPort(addr)
		if !ok || err != nil {
			t.Fatalf("KAFKA_LISTENERS entry %q", l)
		}
		listeners[name] = port
	}
	protocols := map[string]bool{}
	for _, m := range strings.Split(env(k, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"), ",") {
		name, _, _ := strings.Cut(m, ":")
		protocols[name] = true
	}
	for name := range listeners {
		if !protocols[name] {
			t.Errorf("listener %s has no security protocol", name)
		}
	}
	for _, l := range strings.Split(env(k, "KAFKA_ADVERTISED_LISTENERS"), ",") {
		name, addr, _ := strings.Cut(l, "://")
		_, port, _ := net.SplitHostPort(addr)
		if listeners[name] != port {
			t.Errorf("advertised listener %s is on port %s, but it listens on %s", name, port, listeners[name])
		}
	}
	if _, ok := listeners[env(k, "KAFKA_CONTROLLER_LISTENER_NAMES")]; !ok {
		t.Errorf("controller listener %q is not a listener", env(k, "KAFKA_CONTROLLER_LISTENER_NAMES"))
	}
	if _, ok := listeners[env(k, "KAFKA_INTER_BROKER_LISTENER_NAME")]; !ok {
		t.Errorf("inter-broker listener %q is not a listener", env(k, "KAFKA_INTER_BROKER_LISTENER_NAME"))
	}
	voter := env(k, "KAFKA_CONTROLLER_QUORUM_VOTERS")
	if !strings.HasPrefix(voter, env(k, "KAFKA_NODE_ID")+"@kafka:"+listeners[env(k, "KAFKA_CONTROLLER_LISTENER_NAMES")]) {
		t.Errorf("KAFKA_CONTROLLER_QUORUM_VOTERS %q is not this node's controller listener", voter)
	}
	// One broker: internal topics with more replicas than brokers never
	// get created and transactions (the stream's exactly-once) hang.
	for _, v := range []string{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"} {
		if env(k, v) != "1" {
			t.Errorf("%s = %q; a one-node cluster needs 1", v, env(k, v))
		}
	}
	// The host reaches Kafka on a published port that is advertised.
	for _, pc := range k.Ports {
		if !strings.Contains(env(k, "KAFKA_ADVERTISED_LISTENERS"), "localhost:"+pc.Published) {
			t.Errorf("kafka publishes %s but advertises no localhost listener on it", pc.Published)
		}
	}
}

// TestComposeStartOrder checks that `docker compose up` converges: every
// condition refers to a service that can meet it, and nothing waits in a
// cycle.
func TestComposeStartOrder(t *testing.T) {
	p := loadCompose(t)
	for name, svc := range p.Services {
		for dep, d := range svc.DependsOn {
			ds, ok := p.Services[dep]
			if !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if ds.HealthCheck == nil || ds.HealthCheck.Disable || len(ds.HealthCheck.Test) == 0 {
					t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if ds.Restart != "" && ds.Restart != types.RestartPolicyNo {
					t.Errorf("%s waits for %s to complete, but %s restarts (%s)", name, dep, dep, ds.Restart)
				}
			case types.ServiceConditionStarted:
			default:
				t.Errorf("%s: unknown condition %q on %s", name, d.Condition, dep)
			}
		}
	}
	// Who needs whom: the senders wait for the edge, Grafana for the sink.
	want := map[string]string{"prometheus": "edge", "telegraf": "edge", "grafana": "sink", "minio-init": "minio"}
	for svc, dep := range want {
		if _, ok := p.Services[svc].DependsOn[dep]; !ok {
			t.Errorf("%s does not wait for %s", svc, dep)
		}
	}
	// No cycles: a topological walk visits everything.
	state := map[string]int{}
	var visit func(string, []string)
	visit = func(n string, path []string) {
		switch state[n] {
		case 1:
			t.Errorf("dependency cycle: %s", strings.Join(append(path, n), " → "))
			return
		case 2:
			return
		}
		state[n] = 1
		for dep := range p.Services[n].DependsOn {
			visit(dep, append(path, n))
		}
		state[n] = 2
	}
	for n := range p.Services {
		visit(n, nil)
	}
	// Host ports are unique.
	seen := map[string]string{}
	for name, svc := range p.Services {
		for _, pc := range svc.Ports {
			if other, dup := seen[pc.Published]; dup {
				t.Errorf("host port %s is published by %s and %s", pc.Published, name, other)
			}
			seen[pc.Published] = name
		}
	}
}

// TestComposePrometheusAgent loads the agent's configuration with
// Prometheus' own loader (agent mode) and checks that it scrapes every
// weir target and itself and writes to the edge.
func TestComposePrometheusAgent(t *testing.T) {
	p := loadCompose(t)
	svc := p.Services["prometheus"]
	if !containsArg(svc.Command, "--agent") {
		t.Errorf("prometheus does not run in agent mode: %v", svc.Command)
	}
	var file string
	for _, a := range svc.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			file = hostPathOf(svc, v)
		}
	}
	if file == "" {
		t.Fatalf("prometheus: --config.file is not mounted: %v", svc.Command)
	}
	cfg, err := promconfig.LoadFile(file, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, sd := range sc.ServiceDiscoveryConfigs {
			static, ok := sd.(discovery.StaticConfig)
			if !ok {
				continue
			}
			for _, g := range static {
				for _, target := range g.Targets {
					scraped[string(target[model.AddressLabel])] = true
				}
			}
		}
	}
	for name := range weirTargets {
		if !scraped[name+":9480"] {
			t.Errorf("the agent does not scrape %s:9480 (scrapes %v)", name, scraped)
		}
	}
	if !scraped["localhost:9090"] {
		t.Error("the agent does not scrape itself")
	}
	if len(cfg.RemoteWriteConfigs) != 1 {
		t.Fatalf("want one remote_write, got %d", len(cfg.RemoteWriteConfigs))
	}
	rw := cfg.RemoteWriteConfigs[0]
	checkEdgeURL(t, p, "prometheus remote_write", rw.URL.String(), "/api/v1/write")
	if rw.Headers["X-Scope-OrgID"] == "" {
		t.Error("the agent writes without a tenant (X-Scope-OrgID)")
	}
	// Grafana's default data source reads what the agent writes.
	if ds := grafanaDatasources(t, p)["weir"]; ds.tenant != rw.Headers["X-Scope-OrgID"] {
		t.Errorf("Grafana's weir data source reads tenant %q, the agent writes %q", ds.tenant, rw.Headers["X-Scope-OrgID"])
	}
}

// checkEdgeURL checks that u reaches the edge service on its HTTP port.
func checkEdgeURL(t *testing.T, p *types.Project, what, u, path string) {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if pu.Hostname() != "edge" || pu.Port() != "9480" {
		t.Errorf("%s goes to %s, not the edge (edge:9480)", what, pu.Host)
	}
	if path != "" && pu.Path != path {
		t.Errorf("%s: path %s, want %s", what, pu.Path, path)
	}
	if _, ok := p.Services["edge"]; !ok {
		t.Errorf("%s: no edge service", what)
	}
}

func containsArg(cmd types.ShellCommand, arg string) bool {
	for _, a := range cmd {
		if a == arg {
			return true
		}
	}
	return false
}

// TestComposeTelegraf parses Telegraf's TOML and checks it writes line
// protocol to the edge with a tenant.
func TestComposeTelegraf(t *testing.T) {
	p := loadCompose(t)
	svc := p.Services["telegraf"]
	file := hostPathOf(svc, "/etc/telegraf/telegraf.conf")
	if file == "" {
		t.Fatal("telegraf's configuration is not mounted at /etc/telegraf/telegraf.conf")
	}
	conf := parseTelegraf(t, file)
	if len(conf.Outputs.InfluxDBv2) != 1 {
		t.Fatalf("want one influxdb_v2 output, got %d", len(conf.Outputs.InfluxDBv2))
	}
	out := conf.Outputs.InfluxDBv2[0]
	for _, u := range out.URLs {
		checkEdgeURL(t, p, "telegraf influxdb_v2 output", u, "")
	}
	if out.HTTPHeaders["X-Scope-OrgID"] == "" {
		t.Error("telegraf writes without a tenant (X-Scope-OrgID)")
	}
	for _, in := range []string{"cpu", "mem", "disk", "net", "system"} {
		if _, ok := conf.Inputs[in]; !ok {
			t.Errorf("telegraf does not collect %s", in)
		}
	}
	if ds := grafanaDatasources(t, p)["weir-telegraf"]; ds.tenant != out.HTTPHeaders["X-Scope-OrgID"] {
		t.Errorf("Grafana's telegraf data source reads tenant %q, Telegraf writes %q", ds.tenant, out.HTTPHeaders["X-Scope-OrgID"])
	}
}

// telegrafConf is the part of Telegraf's configuration the stack sets.
type telegrafConf struct {
	Agent   map[string]any `toml:"agent"`
	Outputs struct {
		InfluxDBv2 []struct {
			URLs        []string          `toml:"urls"`
			Org         string            `toml:"organization"`
			Bucket      string            `toml:"bucket"`
			Encoding    string            `toml:"content_encoding"`
			HTTPHeaders map[string]string `toml:"http_headers"`
			Timeout     string            `toml:"timeout"`
			Token       string            `toml:"token"`
		} `toml:"influxdb_v2"`
	} `toml:"outputs"`
	Inputs map[string]any `toml:"inputs"`
}

func parseTelegraf(t *testing.T, file string) telegrafConf {
	t.Helper()
	var conf telegrafConf
	dec := toml.NewDecoder(strings.NewReader(string(readFile(t, file))))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&conf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return conf
}

type grafanaDatasource struct {
	url, tenant string
}

// grafanaDatasources reads the provisioned data sources by uid, checking
// each points at the sink's query API.
func grafanaDatasources(t *testing.T, p *types.Project) map[string]grafanaDatasource {
	t.Helper()
	svc := p.Services["grafana"]
	dir := hostPathOf(svc, "/etc/grafana/provisioning/datasources")
	if dir == "" {
		dir = filepath.Join(hostPathOf(svc, "/etc/grafana/provisioning"), "datasources")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no Grafana data sources provisioned under %s", dir)
	}
	out := map[string]grafanaDatasource{}
	for _, f := range files {
		var doc struct {
			APIVersion  int `yaml:"apiVersion"`
			Datasources []struct {
				Name           string            `yaml:"name"`
				UID            string            `yaml:"uid"`
				Type           string            `yaml:"type"`
				Access         string            `yaml:"access"`
				URL            string            `yaml:"url"`
				IsDefault      bool              `yaml:"isDefault"`
				JSONData       map[string]any    `yaml:"jsonData"`
				SecureJSONData map[string]string `yaml:"secureJsonData"`
			} `yaml:"datasources"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(readFile(t, f))))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, ds := range doc.Datasources {
			if ds.Type != "prometheus" {
				t.Errorf("%s: data source %s is %s, want prometheus", f, ds.Name, ds.Type)
			}
			u, err := url.Parse(ds.URL)
			if err != nil || u.Hostname() != "sink" || u.Port() != "9480" {
				t.Errorf("%s: data source %s reads %s, not the sink's query API (http://sink:9480)", f, ds.Name, ds.URL)
			}
			tenant := ""
			for k, v := range ds.JSONData {
				if strings.HasPrefix(k, "httpHeaderName") && v == "X-Scope-OrgID" {
					tenant = ds.SecureJSONData[strings.Replace(k, "Name", "Value", 1)]
				}
			}
			if tenant == "" {
				t.Errorf("%s: data source %s sends no X-Scope-OrgID", f, ds.Name)
			}
			out[ds.UID] = grafanaDatasource{url: ds.URL, tenant: tenant}
		}
	}
	return out
}

// TestComposeGrafana checks that the dashboards Grafana is told to load
// are the repository's, and its home dashboard is one of them.
func TestComposeGrafana(t *testing.T) {
	p := loadCompose(t)
	svc := p.Services["grafana"]
	prov := hostPathOf(svc, "/etc/grafana/provisioning/dashboards")
	if prov == "" {
		prov = filepath.Join(hostPathOf(svc, "/etc/grafana/provisioning"), "dashboards")
	}
	files, _ := filepath.Glob(filepath.Join(prov, "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no dashboard provider provisioned")
	}
	for _, f := range files {
		var doc struct {
			APIVersion int `yaml:"apiVersion"`
			Providers  []struct {
				Name                  string `yaml:"name"`
				Folder                string `yaml:"folder"`
				Type                  string `yaml:"type"`
				DisableDeletion       bool   `yaml:"disableDeletion"`
				AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
				UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
				Options               struct {
					Path                      string `yaml:"path"`
					FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(readFile(t, f))))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, pr := range doc.Providers {
			dir := hostPathOf(svc, pr.Options.Path)
			if filepath.Clean(dir) != filepath.Clean(repoPath("deploy", "grafana")) {
				t.Errorf("%s: provider %s loads %s, mounted from %q, want deploy/grafana", f, pr.Name, pr.Options.Path, dir)
			}
		}
	}
	home := env(svc, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
	if hostPathOf(svc, home) == "" {
		t.Errorf("Grafana's home dashboard %s is not mounted", home)
	}
	if ds := grafanaDatasources(t, p); len(ds) < 1 {
		t.Error("no data source")
	}
}

// TestDockerfile checks the image the compose file builds: it builds the
// weir command, runs as the user the Kubernetes manifests expect, and
// exposes the port everything else uses.
func TestDockerfile(t *testing.T) {
	b := string(readFile(t, repoPath("Dockerfile")))
	if !regexp.MustCompile(`go build[^&;]*\./services/weir`).MatchString(b) {
		t.Error("the Dockerfile does not build ./services/weir")
	}
	if _, err := os.Stat(repoPath("services", "weir", "main.go")); err != nil {
		t.Error(err)
	}
	if !strings.Contains(b, "EXPOSE 9480") || !strings.Contains(b, "WEIR_HTTP_ADDR=0.0.0.0:9480") {
		t.Error("the image must listen on 0.0.0.0:9480 and expose it")
	}
	m := regexp.MustCompile(`(?m)^USER (\d+)`).FindStringSubmatch(b)
	if m == nil {
		t.Fatal("the image runs as root: set a numeric USER")
	}
	if m[1] != fmt.Sprint(kubernetesUID) {
		t.Errorf("the image runs as %s, the Kubernetes manifests as %d", m[1], kubernetesUID)
	}
	// The health checks of docker-compose.yml run wget in the image.
	if !strings.Contains(b, "FROM alpine") {
		t.Error("the runtime image must have wget for the compose health checks")
	}
}
