// Package config lets every flag of a binary also be set by a BR_-prefixed environment
// variable, and reports bad settings in one clear line that names the setting.
package config

import (
	"flag"
	"fmt"
	"strings"
)

// EnvName returns the environment variable that sets a flag: "gossip-bind" -> "BR_GOSSIP_BIND".
func EnvName(flagName string) string {
	return "BR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs after applying environ (KEY=value lines, as os.Environ gives):
// a flag given on the command line wins over its environment variable.
func Parse(fs *flag.FlagSet, args, environ []string) error {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if v, ok := env[EnvName(f.Name)]; ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = Invalid(f.Name, e.Error())
			}
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}

// Invalid builds the one-line error for a bad setting.
func Invalid(flagName, why string) error {
	return fmt.Errorf("config: %s (-%s) %s", EnvName(flagName), flagName, why)
}
