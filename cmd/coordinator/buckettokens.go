package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/coordinator/provider/digitalocean"
)

// storageScope is the scope of the tokens the coordinator lends: objects
// read and written (each lent token is narrowed further to one bucket).
const storageScope = "https://www.googleapis.com/auth/devstorage.read_write"

// bucketTokenDefaults turns --lend-bucket-tokens into the coordinator's
// token source: on by default with --provider digitalocean, whose
// droplets have no Google credential, off otherwise.
func (f *flags) bucketTokenDefaults() {
	set := false
	f.fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == "lend-bucket-tokens" })
	if !set {
		f.lendTokens = f.provider == digitalocean.Name
	}
	switch {
	case !f.lendTokens:
	case os.Getenv(emulatorEnv) != "":
		// Against an emulator the storage library sends no credential,
		// and there is no STS to narrow one: nodes get a placeholder the
		// emulator ignores (test/do's droplets and their fake GCS).
		f.cfg.BucketTokens = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "storage-emulator"})
		f.cfg.BucketTokensUnscoped = true
	default:
		f.cfg.BucketTokens = &googleTokens{}
	}
}

// emulatorEnv names the storage emulator (fake-gcs-server) the storage
// library talks to instead of Google when it is set.
const emulatorEnv = "STORAGE_EMULATOR_HOST"

// googleTokens is the Google credential where the coordinator runs
// (Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud's
// application default login, or a GCE service account), found at the first
// token asked for rather than at start: a coordinator without one still
// serves, and the nodes that ask are told what to do.
type googleTokens struct {
	mu sync.Mutex // protects ts
	ts oauth2.TokenSource
}

// Token implements oauth2.TokenSource. Finding no credential is an error
// wrapping coordinator.ErrNoGoogleCredentials; it is tried again next time.
func (g *googleTokens) Token() (*oauth2.Token, error) {
	g.mu.Lock()
	if g.ts == nil {
		ts, err := google.DefaultTokenSource(context.Background(), storageScope)
		if err != nil {
			g.mu.Unlock()
			return nil, fmt.Errorf("%w (%v)", coordinator.ErrNoGoogleCredentials, err)
		}
		g.ts = ts
	}
	ts := g.ts
	g.mu.Unlock()
	return ts.Token()
}
