package config

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable weir reads: the setting
// kafka.embedded.addr is WEIR_KAFKA_EMBEDDED_ADDR.
const EnvPrefix = "WEIR"

// flagKeys maps the command-line flags to the settings they set. Flags use
// dashes (--data-dir), settings underscores (data_dir); dots nest.
var flagKeys = []struct {
	flag, key, usage string
}{
	{"data-dir", "data_dir", "directory for all state: embedded broker log, TSDB shards, local bucket"},
	{"log.level", "log.level", "log level: debug, info, warn, error"},
	{"log.format", "log.format", "log format: text or json"},
	{"http.addr", "http.addr", "HTTP listen address for writes, queries and operational endpoints"},
	{"kafka.brokers", "kafka.brokers", "external Kafka seed brokers, comma separated (empty: embedded broker)"},
	{"kafka.partitions", "kafka.partitions", "partitions of newly created topics"},
	{"kafka.embedded.addr", "kafka.embedded.addr", "listen address of the embedded Kafka-protocol broker"},
	{"kafka.embedded.sync-writes", "kafka.embedded.sync_writes", "fsync every produced batch before acknowledging it"},
	{"stream.instance-id", "stream.instance_id", "stable, unique ID of this stream worker"},
	{"stream.pipelines-dir", "stream.pipelines_dir", "directory of pipeline files (default.yaml, <tenant>.yaml)"},
	{"sink.instance-id", "sink.instance_id", "stable, unique ID of this sink worker"},
	{"sink.tsdb-shards", "sink.tsdb_shards", "TSDB shards per tenant"},
}

// RegisterFlags adds --config and the flags of the most used settings to fs,
// with the defaults of Default(). Every setting, flag or not, can also be
// set in the file and through WEIR_* variables.
func RegisterFlags(fs *pflag.FlagSet) {
	def := Default()
	values := leafValues(def)
	fs.String("config", "", "YAML configuration file (see docs/configuration.md)")
	for _, f := range flagKeys {
		switch v := values[f.key].(type) {
		case string:
			fs.String(f.flag, v, f.usage)
		case int:
			fs.Int(f.flag, v, f.usage)
		case bool:
			fs.Bool(f.flag, v, f.usage)
		case []string:
			fs.StringSlice(f.flag, v, f.usage)
		default:
			panic(fmt.Sprintf("config: flag %s has unsupported type %T", f.flag, v))
		}
	}
}

// Load builds the configuration from defaults, the file named by --config,
// the environment and the flags in fs (each overriding the one before),
// and validates it.
func Load(fs *pflag.FlagSet) (Config, error) {
	v := viper.New()
	for key, val := range leafValues(Default()) {
		v.SetDefault(key, val)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if fs != nil {
		for _, f := range flagKeys {
			if fl := fs.Lookup(f.flag); fl != nil {
				if err := v.BindPFlag(f.key, fl); err != nil {
					return Config{}, fmt.Errorf("binding flag --%s: %w", f.flag, err)
				}
			}
		}
		if fl := fs.Lookup("config"); fl != nil && fl.Value.String() != "" {
			v.SetConfigFile(fl.Value.String())
			v.SetConfigType("yaml")
			if err := v.ReadInConfig(); err != nil {
				return Config{}, fmt.Errorf("reading configuration file %s: %w", fl.Value.String(), err)
			}
		}
	}

	var cfg Config
	err := v.UnmarshalExact(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return Config{}, fmt.Errorf("configuration: %w (docs/configuration.md lists every setting)", err)
	}
	// An empty WEIR_KAFKA_BROKERS gives [""]; it means "no brokers".
	cfg.Kafka.Brokers = nonEmpty(cfg.Kafka.Brokers)
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

// YAML renders the configuration as a configuration file would hold it,
// with secrets replaced by <secret>.
func (c Config) YAML() ([]byte, error) {
	node := map[string]any{}
	for k, v := range leafValues(c) {
		if (strings.HasSuffix(k, "password") || strings.HasSuffix(k, "secret_key")) && v != "" {
			v = "<secret>"
		}
		if d, ok := v.(fmt.Stringer); ok && reflect.TypeOf(v).Kind() == reflect.Int64 {
			v = d.String()
		}
		setPath(node, strings.Split(k, "."), v)
	}
	return yaml.Marshal(node)
}

// Keys lists every setting, sorted, for documentation and tests.
func Keys() []string {
	vals := leafValues(Default())
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// leafValues flattens a Config into dotted setting keys and their values,
// following the mapstructure tags.
func leafValues(c Config) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("mapstructure")
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			f := v.Field(i)
			if f.Kind() == reflect.Struct {
				walk(key, f)
				continue
			}
			out[key] = f.Interface()
		}
	}
	walk("", reflect.ValueOf(c))
	return out
}

func setPath(m map[string]any, path []string, v any) {
	if len(path) == 1 {
		m[path[0]] = v
		return
	}
	sub, ok := m[path[0]].(map[string]any)
	if !ok {
		sub = map[string]any{}
		m[path[0]] = sub
	}
	setPath(sub, path[1:], v)
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "weir"
	}
	return h
}
