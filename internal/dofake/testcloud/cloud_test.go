package testcloud

import (
	"errors"
	"testing"

	"github.com/cloudml/cloudml/internal/dofake"
)

func TestConfigValidate(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Name == "" || c.Nodes != 3 || c.Token != dofake.DefaultToken || c.Logger == nil {
		t.Errorf("defaults = %+v, want a name, 3 nodes, dofake's token and a logger", c)
	}
	for _, bad := range []Config{{Nodes: -1}, {Nodes: 1000}, {ActiveDelay: -1}, {Bucket: "a/b"}, {Bucket: "b"}, {Bucket: "Has Space"}} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", bad, err)
		}
	}
}

func TestSummaryString(t *testing.T) {
	got := Summary{Created: 4, Deleted: 3, Left: 1}.String()
	if want := "droplets created 4, deleted 3, left 1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
