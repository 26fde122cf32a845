package provider

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// ErrUnknownProvider means a name no provider was registered under.
var ErrUnknownProvider = errors.New("unknown provider")

// Env is what the coordinator's configuration gives every provider.
type Env struct {
	// StateDir is the coordinator's state directory; providers keep their
	// files below StateDir/nodes unless configured otherwise.
	StateDir string
	// Logger is the provider's logger (named after it by Registry.New).
	Logger hclog.Logger
}

// Factory builds a provider from Env and the settings it captured (flags).
type Factory func(Env) (Provider, error)

// Entry is one registered provider.
type Entry struct {
	// Name is what --provider takes; the provider's Name returns it.
	Name string
	// Usage describes the provider in one or a few lines, for --help.
	Usage string
	// StartNodes says that the coordinator creates --nodes nodes at start
	// with it (local, netns); without it nodes come from elsewhere (none:
	// agents started by hand).
	StartNodes bool
	// New builds it.
	New Factory
}

// Registry maps provider names to factories; cmd/coordinator fills it. The
// zero value is empty and ready to use; it is not safe for concurrent
// Register.
type Registry struct {
	entries []Entry
}

// Register adds e. It panics on an empty or duplicate name or a nil
// factory: those are programming errors.
func (r *Registry) Register(e Entry) {
	if e.Name == "" || e.New == nil {
		panic("provider: Register needs a name and a factory")
	}
	if _, ok := r.Lookup(e.Name); ok {
		panic("provider: Register called twice for " + e.Name)
	}
	r.entries = append(r.entries, e)
}

// Lookup returns the entry registered under name.
func (r *Registry) Lookup(name string) (Entry, bool) {
	for _, e := range r.entries {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// Names returns the registered names in registration order.
func (r *Registry) Names() []string {
	names := make([]string, len(r.entries))
	for i, e := range r.entries {
		names[i] = e.Name
	}
	return names
}

// Entries returns the registered entries in registration order.
func (r *Registry) Entries() []Entry { return append([]Entry(nil), r.entries...) }

// New builds the provider registered under name, with env.Logger named
// after it (a nil logger becomes a null one). The provider must report the
// name it was registered under.
func (r *Registry) New(name string, env Env) (Provider, error) {
	e, ok := r.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (want %s)", ErrUnknownProvider, name, orList(r.Names()))
	}
	if env.Logger == nil {
		env.Logger = hclog.NewNullLogger()
	}
	env.Logger = env.Logger.Named(name)
	p, err := e.New(env)
	if err != nil {
		return nil, fmt.Errorf("%s provider: %w", name, err)
	}
	if p == nil || p.Name() != name {
		return nil, fmt.Errorf("%s provider: factory returned a provider named %q", name, nameOf(p))
	}
	return p, nil
}

func nameOf(p Provider) string {
	if p == nil {
		return "<nil>"
	}
	return p.Name()
}

// orList spells names as `"a", "b" or "c"`.
func orList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	switch len(q) {
	case 0:
		return "none registered"
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
