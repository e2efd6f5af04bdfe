package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc describes a long-running process the harness starts and later kills by
// the PID it recorded. The PID file also stores a marker (the first argument)
// that is compared with /proc/PID/cmdline before any signal is sent, so a
// reused PID is never killed.
type Proc struct {
	Name    string   // unique, used for the pid and log file names
	NetNS   string   // run inside this named network namespace ("" = host)
	Args    []string // argv; Args[0] is an absolute path
	Env     []string // extra environment
	LogFile string
	Marker  string // program name to look for in /proc/PID/cmdline (default: base of Args[0])
}

// pidDir is where the pid files of every process live.
func (c *Config) pidDir() string { return filepath.Join(c.StateDir, "pids") }

// Start launches p in its own session, detached from the caller, with stdout
// and stderr appended to its log file, and records its PID.
func (c *Config) Start(p Proc) (int, error) {
	if err := os.MkdirAll(c.pidDir(), 0o755); err != nil {
		return 0, err
	}
	args := p.Args
	if p.NetNS != "" {
		args = append([]string{"/usr/sbin/ip", "netns", "exec", p.NetNS}, args...)
	}
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", p.Name, err)
	}
	pid := cmd.Process.Pid
	// Reap in the background so that a process dying while we run does not
	// linger as a zombie (which would look alive to pidAlive).
	go func() {
		if err := cmd.Wait(); err != nil {
			if f, ferr := os.OpenFile(p.LogFile, os.O_WRONLY|os.O_APPEND, 0); ferr == nil {
				fmt.Fprintf(f, "e2e: process %s (pid %d) exited: %v\n", p.Name, cmd.Process.Pid, err)
				f.Close()
			}
		}
	}()
	marker := p.Marker
	if marker == "" {
		marker = filepath.Base(p.Args[0])
	}
	content := fmt.Sprintf("%d %s\n", pid, marker)
	if err := os.WriteFile(filepath.Join(c.pidDir(), p.Name+".pid"), []byte(content), 0o644); err != nil {
		return pid, err
	}
	return pid, nil
}

// readPid returns the recorded PID of name if that process is still ours.
func (c *Config) readPid(name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.pidDir(), name+".pid"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 1 {
		return 0, false
	}
	return pid, pidIs(pid, f[1])
}

// pidIs reports whether pid is alive (not a zombie) and runs a program whose
// argv contains marker.
func pidIs(pid int, marker string) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
		return false
	}
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if len(cl) == 0 {
		// Read in the middle of an execve: the process exists.
		return true
	}
	for _, a := range bytes.Split(cl, []byte{0}) {
		if filepath.Base(string(a)) == marker {
			return true
		}
	}
	return false
}

// Alive reports whether the process recorded as name runs.
func (c *Config) Alive(name string) bool {
	_, ok := c.readPid(name)
	return ok
}

// Signal sends sig to the process recorded as name (SIGSTOP and SIGCONT
// freeze and thaw an agent without it noticing).
func (c *Config) Signal(name string, sig syscall.Signal) error {
	pid, ok := c.readPid(name)
	if !ok {
		return fmt.Errorf("process %s is not running", name)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, name, pid, err)
	}
	return nil
}

// Stop kills the process recorded as name (SIGTERM, then SIGKILL after a
// bounded wait) and removes its pid file.
func (c *Config) Stop(name string) error {
	pidFile := filepath.Join(c.pidDir(), name+".pid")
	pid, ok := c.readPid(name)
	if ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if !waitGone(pid, 5*time.Second) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if !waitGone(pid, 3*time.Second) {
				return fmt.Errorf("process %s (pid %d) does not exit", name, pid)
			}
		}
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// StopAll kills every process with a pid file whose name has the prefix.
func (c *Config) StopAll(prefix string) error {
	ents, err := os.ReadDir(c.pidDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".pid") || !strings.HasPrefix(n, prefix) {
			continue
		}
		errs = append(errs, c.Stop(strings.TrimSuffix(n, ".pid")))
	}
	return errors.Join(errs...)
}

// run executes a short command and returns its combined output.
func run(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
