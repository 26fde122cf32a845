package cloudinit

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"

	"github.com/cloudml/cloudml/internal/pki"
)

// UserData is a rendered user-data. It prints masked (String), so that
// logging or printing one by mistake never shows the join token.
type UserData struct {
	data, masked []byte
}

// Bytes is the user-data to give the provider's API: it holds the join
// token.
func (u UserData) Bytes() []byte { return bytes.Clone(u.data) }

// Masked is the user-data with the join token's secret masked, for
// `cluster up --dry-run` and logs.
func (u UserData) Masked() []byte { return bytes.Clone(u.masked) }

// String is Masked.
func (u UserData) String() string { return string(u.masked) }

// Len is the size of Bytes.
func (u UserData) Len() int { return len(u.data) }

// maskedSecret replaces the token's secret in Masked.
const maskedSecret = "<secret-masked>"

// Render renders the user-data of one machine.
func Render(cfg Config) (UserData, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return UserData{}, err
	}
	data, err := render(cfg)
	if err != nil {
		return UserData{}, err
	}
	if len(data) > MaxBytes {
		return UserData{}, fmt.Errorf("%w: the user-data is %d bytes, over the limit of %d", ErrConfig, len(data), MaxBytes)
	}
	tok, _ := pki.ParseToken(cfg.JoinToken) // Validate parsed it
	masked := tok
	masked.Secret = maskedSecret
	return UserData{
		data:   data,
		masked: bytes.ReplaceAll(data, []byte(tok.String()), []byte(masked.String())),
	}, nil
}

// cloudConfig is the rendered document, in the order of its keys.
type cloudConfig struct {
	WriteFiles []File    `yaml:"write_files"`
	RunCmd     []flowSeq `yaml:"runcmd"`
}

// flowSeq is a list written on one line: [sh, /path].
type flowSeq []string

// MarshalYAML writes s in flow style.
func (s flowSeq) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, v := range s {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: v})
	}
	return n, nil
}

func render(cfg Config) ([]byte, error) {
	tok, _ := pki.ParseToken(cfg.JoinToken)
	td := tmplData{
		Agent: cfg.path(AgentPath), AgentArgs: strings.Join(cfg.agentArgs(), " "),
		AgentURL: cfg.AgentURL, AgentSHA256: cfg.AgentSHA256,
		CACert: cfg.path(CACertPath), BinDir: cfg.path(filepath.Dir(AgentPath)), Unit: UnitName,
		NoTokenStatus: AgentExitNoToken,
		FoundSwarm:    cfg.FoundSwarm, Address: cfg.Address, MetadataURL: cfg.MetadataURL,
	}
	unit, err := execute(unitTmpl, td)
	if err != nil {
		return nil, err
	}
	script, err := execute(scriptTmpl, td)
	if err != nil {
		return nil, err
	}
	doc := cloudConfig{
		WriteFiles: []File{
			{Path: cfg.path(CACertPath), Owner: "root:root", Permissions: "0644", Content: string(cfg.CACertPEM)},
			{Path: cfg.path(TokenPath), Owner: "root:root", Permissions: "0600", Content: tok.String() + "\n"},
			{Path: cfg.path(UnitPath), Owner: "root:root", Permissions: "0644", Content: unit},
			{Path: cfg.path(ScriptPath), Owner: "root:root", Permissions: "0755", Content: script},
		},
		RunCmd: []flowSeq{{"sh", cfg.path(ScriptPath)}},
	}
	var b bytes.Buffer
	b.WriteString("#cloud-config\n")
	name := cfg.Name
	if name == "" {
		name = "(unnamed)"
	}
	fmt.Fprintf(&b, `# CloudML node %s, made by the coordinator at %s.
# It installs Docker if the image has none, downloads cloudml-agent from
# the coordinator over TLS checked against the coordinator's CA, checks
# the agent's sha256 and starts it with a single-use join token.
#   CA sha256:    %s
#   agent sha256: %s
#   token id:     %s
# Nothing else in it is secret.
`, name, cfg.CoordinatorAddr, cfg.CAFingerprint, cfg.AgentSHA256, tok.ID)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("render user-data: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render user-data: %w", err)
	}
	return b.Bytes(), nil
}

// path is p on the machine (under root in tests).
func (c Config) path(p string) string { return c.root + p }

// agentArgs is the agent's argv after the program, from the config.
func (c Config) agentArgs() []string {
	args := []string{
		"--coordinator", c.CoordinatorAddr,
		"--token-file", c.path(TokenPath),
		"--work-dir", c.path(WorkDir),
		"--metadata-url", c.MetadataURL,
		"--docker", c.Docker,
		// A droplet has no Google credential (none goes in user-data):
		// gs:// buckets use tokens the coordinator lends over mTLS.
		"--bucket-auth", "coordinator",
	}
	if c.Slots > 0 {
		args = append(args, "--slots", strconv.Itoa(c.Slots))
	}
	if c.Hostname != "" {
		args = append(args, "--hostname", c.Hostname)
	}
	if c.Address != "" {
		args = append(args, "--address", c.Address)
	}
	if c.SwarmRoot != "" {
		args = append(args, "--swarm-root", c.SwarmRoot)
	}
	return append(args, "--log-level", c.LogLevel)
}

// tmplData is what the unit and the script are made of.
type tmplData struct {
	Agent, AgentArgs      string // the agent's path and flags
	AgentURL, AgentSHA256 string
	CACert, BinDir, Unit  string
	NoTokenStatus         int
	// FoundSwarm, Address and MetadataURL: the swarm init of a machine
	// that founds the swarm (Config.FoundSwarm).
	FoundSwarm           bool
	Address, MetadataURL string
}

func execute(t *template.Template, td tmplData) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, td); err != nil {
		return "", fmt.Errorf("render %s: %w", t.Name(), err)
	}
	return b.String(), nil
}

// unitTmpl is the agent's systemd unit. The agent stops its tasks itself
// on SIGTERM (KillMode=mixed). It is restarted whatever ends it, except
// exit status AgentExitNoToken: a join token that is refused (or a
// machine that failed the provider's check) stays refused, and a machine
// that never registers is deleted by the coordinator after its deadline.
var unitTmpl = template.Must(template.New("unit").Parse(`[Unit]
Description=CloudML node agent
Documentation=https://github.com/cloudml/cloudml
Wants=network-online.target docker.service
After=network-online.target docker.service
StartLimitIntervalSec=0

[Service]
ExecStart={{.Agent}} {{.AgentArgs}}
Restart=always
RestartSec=5
RestartPreventExitStatus={{.NoTokenStatus}}
KillMode=mixed

[Install]
WantedBy=multi-user.target
`))

// scriptTmpl is the bootstrap script runcmd runs once; its output goes to
// /var/log/cloud-init-output.log. Every value in it passed argRE, and is
// single-quoted besides.
var scriptTmpl = template.Must(template.New("script").Parse(`#!/bin/sh
# CloudML node bootstrap, run once by cloud-init.
set -eu
say() { echo "cloudml-bootstrap: $*"; }

# Docker, unless the image has it.
if ! command -v docker >/dev/null 2>&1; then
  say "installing docker.io"
  export DEBIAN_FRONTEND=noninteractive
  n=0
  until apt-get -q -o DPkg::Lock::Timeout=300 update &&
    apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends docker.io; do
    n=$((n + 1))
    if [ "$n" -ge 5 ]; then say "could not install docker.io"; exit 1; fi
    sleep 10
  done
fi
{{- if .FoundSwarm}}

# This machine founds the cluster's swarm (the coordinator chose it as it
# made it, and asks its agent, and no other, to found the swarm). The init
# runs now, beside the agent's download (its address lookup too, so the
# download starts at once); the agent finds the swarm made, or makes it
# itself if this failed. Its output holds the worker join token, so it
# goes nowhere.
(
  if addr={{if .Address}}'{{.Address}}'{{else}}$(curl --fail --silent --show-error --max-time 10 --retry 5 '{{.MetadataURL}}/interfaces/private/0/ipv4/address'){{end}}; then
    say "founding the swarm, advertised at $addr"
    if docker swarm init --listen-addr 0.0.0.0:2377 --advertise-addr "$addr" >/dev/null 2>&1; then
      say "swarm founded"
    else
      say "could not found the swarm here; the agent will"
    fi
  else
    say "could not read this machine's private address; the agent will found the swarm"
  fi
) &
{{- end}}

# The agent, from the coordinator, over TLS checked against its CA; then
# its sha256, before anything runs it.
url='{{.AgentURL}}'
want='{{.AgentSHA256}}'
# Its architecture first: an agent this machine cannot run is not fetched.
case $(uname -m) in
x86_64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
*) arch=$(uname -m) ;;
esac
case $url in
*/linux-"$arch") ;;
*)
  say "refusing the agent: it is ${url##*/}, this machine is linux-$arch (give the coordinator --agent-bin built with GOOS=linux GOARCH=$arch)"
  exit 1
  ;;
esac
tmp=$(mktemp '{{.BinDir}}/.cloudml-agent.XXXXXX')
trap 'rm -f "$tmp"' EXIT
say "downloading $url"
curl --fail --silent --show-error --compressed --proto =https --cacert '{{.CACert}}' \
  --connect-timeout 10 --max-time 900 --retry 60 --retry-delay 5 --retry-max-time 900 --retry-all-errors \
  --output "$tmp" "$url"
say "agent downloaded; checking its sha256"
# openssl uses the CPU's SHA instructions: about 3 times sha256sum's speed.
if command -v openssl >/dev/null 2>&1; then
  got=$(openssl dgst -sha256 -r "$tmp" | cut -d ' ' -f 1)
else
  got=$(sha256sum "$tmp" | cut -d ' ' -f 1)
fi
if [ "$got" != "$want" ]; then
  say "refusing the agent: its sha256 is $got, not $want"
  exit 1
fi
chmod 0755 "$tmp"
mv -f "$tmp" '{{.Agent}}'
trap - EXIT

# enable reloads systemd's configuration itself (see --no-reload), so the
# new unit needs no daemon-reload of its own, which would be a second one.
systemctl enable --now {{.Unit}}
say "{{.Unit}} started"
{{- if .FoundSwarm}}
wait
{{- end}}
`))
