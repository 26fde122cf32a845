package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/agent/backoff"
	"github.com/cloudml/cloudml/internal/atomicfile"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ErrBadToken is returned by Run when the coordinator rejects the bootstrap
// token: retrying cannot help.
var ErrBadToken = errors.New("register: coordinator rejected the bootstrap token (check --token)")

// ErrNoToken is returned by Run when the node has no saved identity and no
// bootstrap token to register with.
var ErrNoToken = errors.New("register: no saved node identity and no bootstrap token (set --token)")

// IdentityFile is the name of the node identity file in the secrets
// directory (SecretsDir).
const IdentityFile = "identity.json"

// SecretsDirName is the directory of the work dir that holds everything
// secret the agent keeps on disk: its node credential today, its private
// key and certificates with mutual TLS. It is created with mode 0700 and no
// task can read it (agent/runtime: another user and a covering mount for a
// root agent, Landlock for a non-root one). Secret files belong here and
// nowhere else in the work dir.
const SecretsDirName = "identity"

// SecretsDir is the secrets directory of the work dir workDir.
func SecretsDir(workDir string) string { return filepath.Join(workDir, SecretsDirName) }

// prepareSecretsDir creates the secrets directory (0700, the agent's) and
// moves a node identity an older agent kept at the top of the work dir into
// it.
func (a *Agent) prepareSecretsDir() error {
	dir := SecretsDir(a.cfg.WorkDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create secrets dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("secrets dir: %w", err)
	}
	old := filepath.Join(a.cfg.WorkDir, IdentityFile)
	if _, err := os.Lstat(old); err == nil {
		if _, err := os.Lstat(a.identityPath()); errors.Is(err, os.ErrNotExist) {
			if err := os.Rename(old, a.identityPath()); err != nil {
				return fmt.Errorf("move the node identity into %s: %w", dir, err)
			}
			a.log.Info("node identity moved into the secrets dir", "path", a.identityPath())
		} else if err := os.Remove(old); err != nil {
			return fmt.Errorf("remove the old node identity: %w", err)
		}
	}
	return nil
}

// identity is what Register returned, kept across agent restarts.
type identity struct {
	NodeID         string `json:"node_id"`
	NodeCredential string `json:"node_credential"`
}

func (a *Agent) identityPath() string { return filepath.Join(SecretsDir(a.cfg.WorkDir), IdentityFile) }

// loadIdentity returns the saved identity, or nil if there is none.
func (a *Agent) loadIdentity() (*identity, error) {
	data, err := os.ReadFile(a.identityPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node identity: %w", err)
	}
	var id identity
	if err := json.Unmarshal(data, &id); err != nil || id.NodeID == "" || id.NodeCredential == "" {
		a.log.Warn("ignoring unreadable node identity; registering again", "path", a.identityPath(), "error", err)
		return nil, nil
	}
	return &id, nil
}

// saveIdentity writes the identity atomically, readable by root only.
func (a *Agent) saveIdentity(id *identity) error {
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(a.identityPath(), data, 0o600); err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	return nil
}

// forgetIdentity deletes the saved identity after the coordinator refused it.
func (a *Agent) forgetIdentity() {
	if err := os.Remove(a.identityPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("delete node identity", "error", err)
	}
}

// ensureIdentity loads the saved identity or registers, retrying transient
// errors with backoff. A rejected token is ErrBadToken.
func (a *Agent) ensureIdentity(ctx context.Context, client cloudmlv1.AgentServiceClient) (*identity, error) {
	id, err := a.loadIdentity()
	if err != nil || id != nil {
		return id, err
	}
	if a.cfg.BootstrapToken == "" {
		return nil, ErrNoToken
	}
	bo := backoff.New(a.cfg.BackoffMin, a.cfg.BackoffMax)
	for {
		callCtx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
		resp, err := client.Register(callCtx, &cloudmlv1.RegisterRequest{
			BootstrapToken: a.cfg.BootstrapToken, Hostname: a.cfg.Hostname, Address: a.cfg.Address,
			Slots: int32(a.cfg.Slots), MemoryBytes: a.memory, Runtime: a.runtimeName(),
		})
		cancel()
		switch {
		case err == nil:
			id := &identity{NodeID: resp.GetNodeId(), NodeCredential: resp.GetNodeCredential()}
			if err := a.saveIdentity(id); err != nil {
				return nil, err
			}
			a.log.Info("registered", "node_id", id.NodeID)
			return id, nil
		case status.Code(err) == codes.Unauthenticated:
			return nil, ErrBadToken
		}
		a.log.Warn("register failed; will retry", "coordinator", a.cfg.CoordinatorAddr, "error", err)
		if err := bo.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// memoryBytes reads MemTotal from /proc/meminfo; 0 if unknown.
func memoryBytes() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb * 1024
	}
	return 0
}
