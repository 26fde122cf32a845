package cloudinit

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is a machine's config with a fresh CA and token.
func testConfig(t *testing.T) (Config, pki.Token) {
	t.Helper()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "CloudML coordinator CA")
	if err != nil {
		t.Fatal(err)
	}
	return configFor(t, ca.CertPEM)
}

// configFor is a machine's config with the CA caPEM and a token for it.
func configFor(t *testing.T, caPEM []byte) (Config, pki.Token) {
	t.Helper()
	ca, err := pki.ParseCert(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	tok := pki.NewToken(pki.Fingerprint(ca))
	return Config{
		Name:            "ml-pool-1",
		CoordinatorAddr: "coord.example.com:7443",
		CACertPEM:       caPEM,
		CAFingerprint:   pki.Fingerprint(ca),
		AgentURL:        "https://coord.example.com:7444/v1/agent/linux-amd64",
		AgentSHA256:     strings.Repeat("0123456789abcdef", 4),
		JoinToken:       tok.String(),
		Slots:           2,
	}, tok
}

func mustRender(t *testing.T, cfg Config) UserData {
	t.Helper()
	u, err := Render(cfg)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return u
}

// TestRenderPassesCloudInitSchema: Debian's cloud-init validates the
// rendering, and its masked form.
func TestRenderPassesCloudInitSchema(t *testing.T) {
	bin := testutil.NeedBinary(t, "cloud-init")
	cfg, _ := testConfig(t)
	cfg.Hostname, cfg.Address, cfg.SwarmRoot = "ml-1", "10.116.0.2", "/var/lib/cloudml/swarm"
	cfg.FoundSwarm = true // the longest script
	u := mustRender(t, cfg)
	for name, data := range map[string][]byte{"user-data": u.Bytes(), "masked": u.Masked()} {
		f := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "schema", "--config-file", f).CombinedOutput()
		if err != nil {
			t.Errorf("cloud-init schema --config-file %s: %v\n%s\n%s", name, err, out, data)
		}
	}
}

// cloudInitKeys are the top-level keys cloud-init's schema knows.
func cloudInitKeys(t *testing.T) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob("/usr/lib/python3*/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")
	if len(files) == 0 {
		testutil.NeedSystem(t, "cloud-init's schema (Debian package cloud-init)", errors.New("schema-cloud-config-v1.json not found"))
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
		AllOf []struct {
			Ref string `json:"$ref"`
		} `json:"allOf"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, ref := range schema.AllOf {
		for k := range schema.Defs[strings.TrimPrefix(ref.Ref, "#/$defs/")].Properties {
			keys[k] = true
		}
	}
	if !keys["write_files"] || !keys["runcmd"] {
		t.Fatalf("cloud-init's schema %s has no write_files or runcmd: %v", files[0], keys)
	}
	return keys
}

// TestRenderKeysAreCloudInits: cloud-init ignores top-level keys it does
// not know (a misspelt write_file passes the schema check), so each key is
// checked against its schema, and the steps the machine relies on are
// checked to be there.
func TestRenderKeysAreCloudInits(t *testing.T) {
	known := cloudInitKeys(t)
	cfg, tok := testConfig(t)
	u := mustRender(t, cfg)
	var doc map[string]any
	if err := yaml.Unmarshal(u.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for k := range doc {
		if !known[k] {
			t.Errorf("top-level key %q is not in cloud-init's schema: cloud-init would skip it", k)
		}
	}
	cc, err := Parse(u.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	type meta struct{ Path, Owner, Permissions string }
	var got []meta
	for _, f := range cc.WriteFiles {
		got = append(got, meta{f.Path, f.Owner, f.Permissions})
	}
	want := []meta{
		{CACertPath, "root:root", "0644"},
		{TokenPath, "root:root", "0600"},
		{UnitPath, "root:root", "0644"},
		{ScriptPath, "root:root", "0755"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("write_files (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"sh", ScriptPath}}, cc.RunCmd); diff != "" {
		t.Errorf("runcmd (-want +got):\n%s", diff)
	}
	if got := cc.File(TokenPath).Content; got != tok.String()+"\n" {
		t.Errorf("token file = %q, want the token", got)
	}
	if got := cc.File(CACertPath).Content; got != string(cfg.CACertPEM) {
		t.Errorf("CA file = %q, want the CA certificate", got)
	}
	unit := cc.File(UnitPath).Content
	for _, want := range []string{"\nRestart=always\n", "\nRestartPreventExitStatus=3\n", "\nWantedBy=multi-user.target\n", "\nExecStart=" + AgentPath + " "} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit has no %q:\n%s", want, unit)
		}
	}
	script := cc.File(ScriptPath).Content
	for _, want := range []string{
		"command -v docker", "install --no-install-recommends docker.io",
		"curl --fail", "--cacert '" + CACertPath + "'", "--retry 60", "'" + cfg.AgentURL + "'",
		"sha256sum", "'" + cfg.AgentSHA256 + "'", "mv -f \"$tmp\" '" + AgentPath + "'",
		"systemctl enable --now " + UnitName,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("bootstrap script has no %q:\n%s", want, script)
		}
	}
}

// TestRenderHoldsOnlyPublicThings: the join token is the user-data's only
// secret, present once; no cloud token, bucket credential, swarm token or
// private key is; every PEM block is the CA certificate; Masked and
// String hold no secret at all.
func TestRenderHoldsOnlyPublicThings(t *testing.T) {
	// Secrets the coordinator's process would have: none may leak in.
	t.Setenv("DIGITALOCEAN_TOKEN", "dop_v1_"+strings.Repeat("d", 64))
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/secret/gcs.json")
	cfg, tok := testConfig(t)
	cfg.Hostname, cfg.Address, cfg.SwarmRoot = "ml-1", "10.116.0.2", "/var/lib/cloudml/swarm"
	cfg.FoundSwarm = true
	u := mustRender(t, cfg)
	data := string(u.Bytes())
	if n := strings.Count(data, tok.String()); n != 1 {
		t.Errorf("the join token appears %d times, want 1", n)
	}
	if n := strings.Count(data, tok.Secret); n != 1 {
		t.Errorf("the token's secret appears %d times, want 1 (in the token)", n)
	}
	for _, secret := range []string{
		"dop_v1_", "DIGITALOCEAN", "/secret/gcs.json", "GOOGLE_APPLICATION_CREDENTIALS", "private_key", "client_email",
		"SWMTKN", "PRIVATE KEY", pki.JoinTokenEnv,
	} {
		if strings.Contains(data, secret) {
			t.Errorf("the user-data holds %q", secret)
		}
	}
	rest := []byte(data)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" || !bytes.Contains(cfg.CACertPEM, pem.EncodeToMemory(block)) {
			t.Errorf("the user-data holds a PEM %s that is not the CA certificate", block.Type)
		}
	}
	for name, shown := range map[string]string{"Masked": string(u.Masked()), "String": u.String()} {
		if strings.Contains(shown, tok.Secret) {
			t.Errorf("%s holds the token's secret", name)
		}
		if !strings.Contains(shown, "-"+tok.ID+"-"+maskedSecret) {
			t.Errorf("%s does not show the token's id with the secret masked", name)
		}
		if strings.Replace(shown, maskedSecret, tok.Secret, 1) != data {
			t.Errorf("%s differs from the user-data elsewhere than the secret", name)
		}
	}
	cc, err := Parse(u.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	argv, err := cc.AgentCommand()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(argv, " "), tok.Secret) {
		t.Errorf("the agent's argv holds the token: %v", argv)
	}
}

// TestRenderFitsDigitalOceanLimit: a rendering is far below 64 KiB, and
// one over it is refused.
func TestRenderFitsDigitalOceanLimit(t *testing.T) {
	cfg, _ := testConfig(t)
	u := mustRender(t, cfg)
	if u.Len() > MaxBytes/8 {
		t.Errorf("user-data is %d bytes, want well under the %d limit", u.Len(), MaxBytes)
	}
	t.Logf("user-data: %d bytes (limit %d)", u.Len(), MaxBytes)
	cfg.SwarmRoot = "/" + strings.Repeat("a", MaxBytes)
	if _, err := Render(cfg); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("Render of a %d-byte swarm root = %v, want an error over the limit", len(cfg.SwarmRoot), err)
	}
}

func TestRenderRefusesBadConfigs(t *testing.T) {
	other, _, err := pki.LoadOrCreateCA(t.TempDir(), "another CA")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"no port":             {func(c *Config) { c.CoordinatorAddr = "coord.example.com" }, "coordinator address"},
		"space in address":    {func(c *Config) { c.CoordinatorAddr = "a b:1" }, "coordinator address"},
		"not a CA":            {func(c *Config) { c.CACertPEM = []byte("junk") }, "CA certificate"},
		"two certificates":    {func(c *Config) { c.CACertPEM = append(c.CACertPEM, other.CertPEM...) }, "one PEM CA"},
		"fingerprint":         {func(c *Config) { c.CAFingerprint = other.Fingerprint() }, "not the CA certificate's"},
		"token of another CA": {func(c *Config) { c.JoinToken = pki.NewToken(other.Fingerprint()).String() }, "pins another CA"},
		"no token":            {func(c *Config) { c.JoinToken = "" }, "join token"},
		"http agent URL":      {func(c *Config) { c.AgentURL = "http://coord:7444/v1/agent/linux-amd64" }, "https://"},
		"URL with a quote":    {func(c *Config) { c.AgentURL = "https://coord:7444/x'$(reboot)" }, "https://"},
		"short sha256":        {func(c *Config) { c.AgentSHA256 = "abc" }, "sha256"},
		"negative slots":      {func(c *Config) { c.Slots = -1 }, "slots"},
		"percent in hostname": {func(c *Config) { c.Hostname = "a%n" }, "hostname"},
		"dollar in address":   {func(c *Config) { c.Address = "$HOME" }, "address"},
		"metadata not a URL":  {func(c *Config) { c.MetadataURL = "169.254.169.254" }, "metadata URL"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			tc.edit(&cfg)
			_, err := Render(cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render = %v, want a config error saying %q", err, tc.want)
			}
		})
	}
}

// TestParseReadsTheAgentCommand: what a systemd stand-in starts is the
// agent with its token file, metadata lookup, Docker and flags.
func TestParseReadsTheAgentCommand(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.Address = "10.116.0.2"
	cc, err := Parse(mustRender(t, cfg).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	argv, err := cc.AgentCommand()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{AgentPath,
		"--coordinator", "coord.example.com:7443", "--token-file", TokenPath, "--work-dir", WorkDir,
		"--metadata-url", DefaultMetadataURL, "--docker", DefaultDocker, "--bucket-auth", "coordinator", "--slots", "2", "--address", "10.116.0.2",
		"--log-level", "info"}
	if diff := cmp.Diff(want, argv); diff != "" {
		t.Errorf("agent command (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"write_files: []\n", "#cloud-config\nwrite_file: []\n", "#cloud-config\n: ["} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrNotCloudConfig) {
			t.Errorf("Parse(%q) = %v, want ErrNotCloudConfig", bad, err)
		}
	}
}
