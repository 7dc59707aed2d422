package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// A configRole is the configuration of one long-running command: flags
// defines its keyed flags on a flag set and returns key → flag name (the
// command and `tether config view` both call it, so the two cannot
// drift); check validates what it reads.
type configRole struct {
	name  string
	flags func(*pflag.FlagSet) map[string]string
	check func(*config) error
}

func configRoles() []configRole {
	return []configRole{
		{"daemon", daemonFlags, func(c *config) error {
			if _, err := daemonIgnorePorts(c); err != nil {
				return err
			}
			_, _, err := daemonRouteFloors(c)
			return err
		}},
		{"manager", managerFlags, func(c *config) error { _, err := managerSettings(c); return err }},
		{"agent", agentFlags, func(c *config) error { _, err := agentPort(c); return err }},
	}
}

// config is a role's viper configuration with the means to say where each
// value came from.
type config struct {
	*viper.Viper
	flags *pflag.FlagSet
	keys  map[string]string // key → flag name
	file  string            // "" without --config
	lines map[string]int    // lower-case dotted key → line in file
}

// loadConfig reads configuration with the precedence flags > env TETHER_*
// > file > defaults. Keys are the dotted names users know
// (grpc.connectionTTL); env names replace dots with underscores.
func loadConfig(flags *pflag.FlagSet, file string, keys map[string]string) (*config, error) {
	v := viper.New()
	v.SetEnvPrefix("TETHER")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for key, flag := range keys {
		if err := v.BindPFlag(key, flags.Lookup(flag)); err != nil {
			return nil, fmt.Errorf("%s: flag --%s: %w", key, flag, err)
		}
	}
	c := &config{Viper: v, flags: flags, keys: keys, file: file, lines: map[string]int{}}
	if file == "" {
		return c, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	yamlLines(&doc, "", c.lines)
	v.SetConfigFile(file)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// yamlLines records the line of every mapping key under n by its dotted,
// lower-cased path (viper's keys are case-insensitive).
func yamlLines(n *yaml.Node, prefix string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlLines(c, prefix, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := strings.ToLower(n.Content[i].Value)
			if prefix != "" {
				k = prefix + "." + k
			}
			lines[k] = n.Content[i].Line
			yamlLines(n.Content[i+1], k, lines)
		}
	}
}

// envName is the variable viper reads key from.
func envName(key string) string {
	return "TETHER_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// A source is where a key's value came from.
type source struct {
	kind   string // flag, env, file or default
	detail string // --flag, TETHER_X, file:line; "" for default
}

func (s source) String() string {
	if s.detail == "" {
		return s.kind
	}
	return s.kind + " " + s.detail
}

// source follows viper's precedence: a set flag, a non-empty env
// variable, the file, the flag's default.
func (c *config) source(key string) source {
	if flag, ok := c.keys[key]; ok && c.flags.Changed(flag) {
		return source{"flag", "--" + flag}
	}
	if os.Getenv(envName(key)) != "" {
		return source{"env", envName(key)}
	}
	if line, ok := c.lines[strings.ToLower(key)]; ok {
		return source{"file", fmt.Sprintf("%s:%d", c.file, line)}
	}
	return source{"default", ""}
}

// errorf is an error about key's value that says where the value came
// from: "manager.yaml:7: grpc.connectionTTL: …" for the file,
// "grpc.connectionTTL (env TETHER_GRPC_CONNECTIONTTL): …" otherwise.
func (c *config) errorf(key, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	switch s := c.source(key); s.kind {
	case "file":
		return fmt.Errorf("%s: %s: %s", s.detail, key, msg)
	case "default":
		return fmt.Errorf("%s: %s", key, msg)
	default:
		return fmt.Errorf("%s (%s): %s", key, s, msg)
	}
}

// display is a value as config view prints it.
func display(v any) string {
	switch v := v.(type) {
	case []string:
		return strings.Join(v, ",")
	case []any:
		s := make([]string, len(v))
		for i, e := range v {
			s[i] = fmt.Sprint(e)
		}
		return strings.Join(s, ",")
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// writeView prints every key of c with its value and source.
func writeView(out io.Writer, c *config) error {
	keys := make([]string, 0, len(c.keys))
	for k := range c.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	for _, k := range keys {
		val := display(c.Get(k))
		if val == "" {
			val = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k, val, c.source(k))
	}
	return tw.Flush()
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show configuration"}
	roles := configRoles()
	// `config view` is the daemon's view; `config view manager` etc. are
	// its subcommands, each taking that role's flags.
	view := newConfigViewCmd(roles[0], "view [daemon|manager|agent]")
	for _, r := range roles {
		view.AddCommand(newConfigViewCmd(r, r.name))
	}
	cmd.AddCommand(view)
	return cmd
}

func newConfigViewCmd(r configRole, use string) *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   use,
		Short: fmt.Sprintf("Print the effective %s configuration and where each value came from (flag, env, file, default)", r.name),
		Args:  cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", r.name+" configuration file (YAML)")
	keys := r.flags(f)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := loadConfig(cmd.Flags(), configFile, keys)
		if err != nil {
			return err
		}
		if err := writeView(cmd.OutOrStdout(), c); err != nil {
			return err
		}
		if err := r.check(c); err != nil {
			return fmt.Errorf("invalid %s configuration: %w", r.name, err)
		}
		return nil
	}
	return cmd
}

// startRole opens a role's log and reads its configuration: the common
// start of the manager and the agent.
func (g *globals) startRole(cmd *cobra.Command, logFile, configFile string, keys map[string]string) (*config, func() error, error) {
	closeLog, err := g.openLog(logFile)
	if err != nil {
		return nil, nil, err
	}
	v, err := loadConfig(cmd.Flags(), configFile, keys)
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	return v, closeLog, nil
}
