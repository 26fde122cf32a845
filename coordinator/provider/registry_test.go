package provider_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
)

func TestRegistryBuildsTheNamedProvider(t *testing.T) {
	var r provider.Registry
	var gotEnv provider.Env
	r.Register(provider.Entry{Name: "fake", Usage: "a fake", StartNodes: true, New: func(env provider.Env) (provider.Provider, error) {
		gotEnv = env
		return providertest.NewFake("fake"), nil
	}})
	r.Register(provider.Entry{Name: provider.NoneName, New: func(provider.Env) (provider.Provider, error) { return provider.None{}, nil }})

	if diff := cmp.Diff([]string{"fake", "none"}, r.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "coordinator", Output: io.Discard})
	p, err := r.New("fake", provider.Env{StateDir: "/state", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "fake" || gotEnv.StateDir != "/state" || gotEnv.Logger == nil || gotEnv.Logger.Name() != "coordinator.fake" {
		t.Errorf("New(fake) = %s with env %+v, want the fake, the state dir and a logger named fake", p.Name(), gotEnv)
	}
	if e, ok := r.Lookup("fake"); !ok || !e.StartNodes || e.Usage != "a fake" {
		t.Errorf("Lookup(fake) = %+v, %v", e, ok)
	}
	if p, err := r.New("none", provider.Env{}); err != nil || p.Name() != "none" {
		t.Errorf("New(none) = %v, %v", p, err)
	}
}

func TestRegistryRefusesUnknownAndMisnamed(t *testing.T) {
	var r provider.Registry
	r.Register(provider.Entry{Name: "local", New: func(provider.Env) (provider.Provider, error) { return providertest.NewFake("other"), nil }})
	r.Register(provider.Entry{Name: "netns", New: func(provider.Env) (provider.Provider, error) { return nil, errors.New("needs root") }})
	r.Register(provider.Entry{Name: "none", New: func(provider.Env) (provider.Provider, error) { return provider.None{}, nil }})

	_, err := r.New("gcp", provider.Env{})
	if !errors.Is(err, provider.ErrUnknownProvider) || !strings.Contains(err.Error(), `(want "local", "netns" or "none")`) {
		t.Errorf("New(gcp) = %v, want ErrUnknownProvider listing the names", err)
	}
	if _, err := r.New("local", provider.Env{}); err == nil || !strings.Contains(err.Error(), `named "other"`) {
		t.Errorf("New of a factory returning another provider = %v, want an error", err)
	}
	if _, err := r.New("netns", provider.Env{}); err == nil || err.Error() != "netns provider: needs root" {
		t.Errorf("New of a failing factory = %v, want it prefixed with the provider's name", err)
	}
}

func TestRegisterPanicsOnDuplicates(t *testing.T) {
	var r provider.Registry
	f := func(provider.Env) (provider.Provider, error) { return provider.None{}, nil }
	r.Register(provider.Entry{Name: "none", New: f})
	for _, e := range []provider.Entry{{Name: "none", New: f}, {Name: "", New: f}, {Name: "x"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%+v) did not panic", e)
				}
			}()
			r.Register(e)
		}()
	}
}

func TestNoneCreatesNothing(t *testing.T) {
	var p provider.Provider = provider.None{}
	if _, err := p.Create(t.Context(), provider.CreateRequest{Count: 1}); !errors.Is(err, provider.ErrUnsupported) || !strings.Contains(err.Error(), "token create") {
		t.Errorf("None.Create = %v, want ErrUnsupported saying how to join agents", err)
	}
	if nodes, err := p.List(t.Context()); err != nil || len(nodes) != 0 {
		t.Errorf("None.List = %v, %v", nodes, err)
	}
	if err := p.Delete(t.Context(), []string{"x"}); err != nil {
		t.Errorf("None.Delete = %v, want nil (nothing exists)", err)
	}
}
