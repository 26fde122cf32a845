package netnsboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cloudml/cloudml/coordinator/cloudinit"
)

// ErrUserData: the user-data is of a kind the harness does not boot.
var ErrUserData = errors.New("user-data not supported")

var (
	modeRE  = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	ownerRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$`)
)

// cloudInit runs the droplet's user-data as cloud-init would on first
// boot, and records how it ended.
func (m *machine) cloudInit(userData string) {
	defer close(m.ciDone)
	m.setCloudInit("running", nil)
	err := m.runUserData(m.ctx, userData)
	m.ciOut.Flush()
	if err != nil {
		if m.ctx.Err() == nil {
			m.log.Warn("cloud-init failed", "error", err, "output", strings.Join(m.ciOut.Tail(), "\n"))
		}
		m.setCloudInit("failed", err)
		return
	}
	m.log.Info("cloud-init done", "elapsed", timeSince(m.booted))
	m.setCloudInit("done", nil)
}

func (m *machine) setCloudInit(state string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ciState, m.ciErr = state, err
}

// runUserData runs a #cloud-config that coordinator/cloudinit rendered
// (its write_files, then its runcmd, stopping at the first command that
// fails), or a #! script; empty user-data does nothing.
func (m *machine) runUserData(ctx context.Context, userData string) error {
	env := []string{"PATH=" + filepath.Join(m.dir, "bin") + ":" + systemPath, "HOME=/root", "LANG=C.UTF-8"}
	switch {
	case strings.TrimSpace(userData) == "":
		return nil
	case strings.HasPrefix(userData, "#!"):
		path := filepath.Join(m.dir, "user-data")
		if err := os.WriteFile(path, []byte(userData), 0o700); err != nil {
			return err
		}
		return m.run(ctx, env, path)
	case !strings.HasPrefix(userData, "#cloud-config"):
		return fmt.Errorf("%w: neither #cloud-config nor a #! script", ErrUserData)
	}
	cc, err := cloudinit.Parse([]byte(userData))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUserData, err)
	}
	for _, f := range cc.WriteFiles {
		if err := m.writeFile(ctx, f); err != nil {
			return err
		}
	}
	for _, argv := range cc.RunCmd {
		if len(argv) == 0 {
			continue
		}
		if err := m.run(ctx, env, argv...); err != nil {
			return fmt.Errorf("runcmd %q: %w", strings.Join(argv, " "), err)
		}
	}
	return nil
}

// writeFile writes one of write_files in the droplet, with its mode and
// owner (default 0644, root:root), creating its directories (0755).
func (m *machine) writeFile(ctx context.Context, f cloudinit.File) error {
	mode, owner := f.Permissions, f.Owner
	if mode == "" {
		mode = "0644"
	}
	if owner == "" {
		owner = "root:root"
	}
	switch {
	case !filepath.IsAbs(f.Path) || filepath.Clean(f.Path) != f.Path:
		return fmt.Errorf("%w: write_files path %q is not a clean absolute path", ErrUserData, f.Path)
	case !modeRE.MatchString(mode):
		return fmt.Errorf("%w: write_files %s: permissions %q", ErrUserData, f.Path, mode)
	case !ownerRE.MatchString(owner):
		return fmt.Errorf("%w: write_files %s: owner %q", ErrUserData, f.Path, owner)
	}
	if owner == "root" || owner == "root:root" {
		err := m.writeRootFile(f.Path, f.Content, mode)
		if err == nil {
			return nil
		}
		m.log.Debug("write_files in-process failed; writing it with a shell in the droplet", "path", f.Path, "error", err)
	}
	cmd := m.command([]string{"PATH=" + systemPath}, "sh", "-euc",
		`(umask 022; mkdir -p -- "$(dirname -- "$0")"); (umask 077; cat > "$0"); chmod "$1" "$0"; chown "$2" "$0"`,
		f.Path, mode, owner)
	cmd.Stdin = strings.NewReader(f.Content)
	if out, err := runCtx(ctx, cmd); err != nil {
		return fmt.Errorf("write_files %s: %w: %s", f.Path, err, strings.TrimSpace(out))
	}
	return nil
}

// run runs one command of the user-data, its output going to the
// droplet's console as cloud-init-output.log would have it.
func (m *machine) run(ctx context.Context, env []string, argv ...string) error {
	cmd := m.command(env, argv...)
	cmd.Stdout, cmd.Stderr = m.ciOut, m.ciOut
	done, err := start(cmd)
	if err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
}
