package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/image"
	dockerclient "github.com/docker/docker/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cloudml/cloudml/internal/pki"
)

// DefaultAddress is the coordinator's address when none is given (what
// `coordinator serve` listens on by default).
const DefaultAddress = "127.0.0.1:7070"

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("invalid client config")

// Config configures a Client. Zero fields take the defaults of
// DefaultConfig, so a Config built field by field works too.
type Config struct {
	// Address is the coordinator's gRPC address: host:port, or any gRPC
	// target (tests use "passthrough:///bufnet" with a dialer in
	// DialOptions). Default DefaultAddress.
	Address string
	// TransportCredentials secure the connection: TLS with a client
	// certificate, from a credential file (ConfigFromFile). The coordinator
	// speaks nothing else; nil leaves them to DialOptions (tests).
	TransportCredentials credentials.TransportCredentials
	// PerRPCCredentials, when set, are attached to every call (such as a
	// bearer token).
	PerRPCCredentials credentials.PerRPCCredentials
	// DialOptions are added after the client's own (a context dialer, an
	// interceptor).
	DialOptions []grpc.DialOption
	// CallTimeout bounds every unary call; default 30s. Streams (logs,
	// image pushes) are bounded only by the caller's context.
	CallTimeout time.Duration
	// MaxRecvMsgSize bounds one message from the coordinator; default
	// 64 MiB (GetJob of a sweep of many tasks is one message).
	MaxRecvMsgSize int
	// Docker connects to the local Docker that images are pushed from;
	// nil means the daemon DOCKER_HOST names, or the default socket.
	Docker func() (DockerImages, error)
}

// DockerImages is the part of the Docker API an image push uses.
type DockerImages interface {
	// ImageInspect describes a local image; a missing one is a Docker
	// not-found error.
	ImageInspect(ctx context.Context, ref string, opts ...dockerclient.ImageInspectOption) (image.InspectResponse, error)
	// ImageSave streams a `docker save` archive of refs.
	ImageSave(ctx context.Context, refs []string, opts ...dockerclient.ImageSaveOption) (io.ReadCloser, error)
	// Close releases the connection.
	Close() error
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Address:        DefaultAddress,
		CallTimeout:    30 * time.Second,
		MaxRecvMsgSize: 64 << 20,
	}
}

// withDefaults fills every zero field from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Address == "" {
		c.Address = d.Address
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = d.CallTimeout
	}
	if c.MaxRecvMsgSize == 0 {
		c.MaxRecvMsgSize = d.MaxRecvMsgSize
	}
	if c.Docker == nil {
		c.Docker = localDocker
	}
	return c
}

// Validate checks the configuration (zero fields are valid: they take
// their defaults).
func (c Config) Validate() error {
	if c.CallTimeout < 0 {
		return fmt.Errorf("%w: call timeout %s is negative", ErrConfig, c.CallTimeout)
	}
	if c.MaxRecvMsgSize < 0 {
		return fmt.Errorf("%w: max receive message size %d is negative", ErrConfig, c.MaxRecvMsgSize)
	}
	return nil
}

// localDocker connects to this machine's Docker (DOCKER_HOST or the
// default socket).
func localDocker() (DockerImages, error) {
	return dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
}

// ConfigFromFile is the configuration a credential file gives (the file
// 'coordinator serve' writes for its admin, or one from 'cloudml-client
// credential create'): the coordinator's address and the TLS identity
// that proves who the client is and checks who the coordinator is.
func ConfigFromFile(path string) (Config, error) {
	cred, err := pki.LoadCredential(path)
	if err != nil {
		return Config{}, err
	}
	return ConfigFromCredential(cred)
}

// ConfigFromCredential is ConfigFromFile of a credential already read.
func ConfigFromCredential(cred *pki.Credential) (Config, error) {
	tlsCfg, err := cred.TLS()
	if err != nil {
		return Config{}, fmt.Errorf("%w: credential %q: %w", ErrConfig, cred.Name, err)
	}
	cfg := DefaultConfig()
	if cred.Coordinator != "" {
		cfg.Address = cred.Coordinator
	}
	cfg.TransportCredentials = credentials.NewTLS(tlsCfg)
	return cfg, nil
}
