package digitalocean

import (
	"testing"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
)

func TestContract(t *testing.T) {
	providertest.Contract(t, func(t *testing.T, ct provider.Target) provider.Provider {
		s := server(t, nil)
		p := newProvider(t, testConfig(s))
		tg, _ := target(t, ct.MintToken) // the contract counts tokens; droplets need real ones
		if err := p.Start(t.Context(), tg); err != nil {
			t.Fatalf("Start: %v", err)
		}
		return p
	})
}
