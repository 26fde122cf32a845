package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// CloudConfig is a rendered user-data read back: the files it writes and
// the commands it runs, in order. It is what the DigitalOcean test server
// needs to boot a fake droplet the way cloud-init boots a real one.
type CloudConfig struct {
	// WriteFiles are written first (cloud-init's write_files).
	WriteFiles []File `yaml:"write_files"`
	// RunCmd are run in order once the files are written (runcmd), each
	// an argv.
	RunCmd [][]string `yaml:"runcmd"`
}

// File is one entry of write_files.
type File struct {
	// Path is the file's absolute path.
	Path string `yaml:"path"`
	// Owner is user:group.
	Owner string `yaml:"owner"`
	// Permissions is the octal mode, such as "0600".
	Permissions string `yaml:"permissions"`
	// Content is the file's content.
	Content string `yaml:"content"`
}

// ErrNotCloudConfig: the data is not a #cloud-config document of the keys
// Render writes.
var ErrNotCloudConfig = errors.New("not a CloudML #cloud-config user-data")

// Parse reads a user-data that Render made. It refuses keys Render does
// not write, so a reader never silently skips a step.
func Parse(data []byte) (*CloudConfig, error) {
	if !bytes.HasPrefix(data, []byte("#cloud-config\n")) {
		return nil, fmt.Errorf("%w: no #cloud-config first line", ErrNotCloudConfig)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cc CloudConfig
	if err := dec.Decode(&cc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCloudConfig, err)
	}
	return &cc, nil
}

// File returns the file written at path, or nil.
func (cc *CloudConfig) File(path string) *File {
	for i := range cc.WriteFiles {
		if cc.WriteFiles[i].Path == path {
			return &cc.WriteFiles[i]
		}
	}
	return nil
}

// AgentCommand is the argv the agent's unit starts (its ExecStart), as a
// systemd stand-in would run it. Render puts no quotes or variables in it.
func (cc *CloudConfig) AgentCommand() ([]string, error) {
	for _, f := range cc.WriteFiles {
		if !strings.HasSuffix(f.Path, UnitPath) {
			continue
		}
		for line := range strings.SplitSeq(f.Content, "\n") {
			if cmd, ok := strings.CutPrefix(line, "ExecStart="); ok {
				return strings.Fields(cmd), nil
			}
		}
		return nil, fmt.Errorf("%w: %s has no ExecStart", ErrNotCloudConfig, f.Path)
	}
	return nil, fmt.Errorf("%w: no %s", ErrNotCloudConfig, UnitPath)
}
