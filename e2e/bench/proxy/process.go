package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var errProxyExited = errors.New("the proxy exited")

// proxyProcess is one proxy running in the node's network namespace.
type proxyProcess struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan error
	peak    *childPeak
}

func startProxy(cfg config, spec proxySpec, logPath string) (*proxyProcess, error) {
	argv, err := spec.argv(cfg)
	if err != nil {
		return nil, err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// `ip netns exec` execs the proxy, so the pid is the proxy's own.
	cmd := exec.Command("ip", append([]string{"netns", "exec", cfg.nodeNamespace}, argv...)...)
	cmd.Env = append(os.Environ(), spec.env(cfg)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &proxyProcess{cmd: cmd, started: time.Now(), exited: make(chan error, 1)}
	p.peak = watchChildren(cmd.Process.Pid)
	go func() {
		p.exited <- cmd.Wait()
		log.Close()
	}()
	return p, nil
}

// stop ends the proxy the way a DaemonSet rollout would, SIGTERM, and kills it if it
// lingers.
func (p *proxyProcess) stop() {
	p.peak.stop()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// metrics fetches the proxy's metrics from inside the node's namespace.
func (p *proxyProcess) metrics(ctx context.Context, cfg config) (string, error) {
	select {
	case err := <-p.exited:
		p.exited <- err
		return "", fmt.Errorf("%w: %v", errProxyExited, err)
	default:
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", cfg.nodeNamespace,
		"curl", "-fsS", "--max-time", "2", metricsURL).Output()
	return string(out), err
}

// usage is a proxy's resident memory and CPU time at one moment.
type usage struct {
	rss, peakRSS  uint64  // bytes: VmRSS and VmHWM
	cpu, childCPU float64 // seconds: own, and of the children it waited for (nft)
}

func (p *proxyProcess) usage() (usage, error) {
	pid := p.cmd.Process.Pid
	var u usage
	var err error
	if u.rss, err = statusBytes(pid, "VmRSS"); err != nil {
		return u, err
	}
	if u.peakRSS, err = statusBytes(pid, "VmHWM"); err != nil {
		return u, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the command name (which may hold spaces) start at state (field 3);
	// utime, stime, cutime and cstime are fields 14 to 17, in clock ticks (100 per second).
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	ticks := func(field int) float64 {
		v, _ := strconv.ParseFloat(fields[field-3], 64)
		return v / 100
	}
	u.cpu = ticks(14) + ticks(15)
	u.childCPU = ticks(16) + ticks(17)
	return u, nil
}

func statusBytes(pid int, key string) (uint64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			kb, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no " + key + " in /proc/" + strconv.Itoa(pid) + "/status")
}

// childPeak samples the proxy's child processes (kube-proxy runs nft for every sync): their
// memory is not in the proxy's own RSS but is part of what the proxy costs a node.
type childPeak struct {
	mu   sync.Mutex
	max  uint64
	done chan struct{}
}

func watchChildren(pid int) *childPeak {
	c := &childPeak{done: make(chan struct{})}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-tick.C:
				c.sample(pid)
			}
		}
	}()
	return c
}

func (c *childPeak) sample(parent int) {
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
	for _, field := range strings.Fields(string(children)) {
		pid, _ := strconv.Atoi(field)
		if hwm, err := statusBytes(pid, "VmHWM"); err == nil {
			c.mu.Lock()
			c.max = max(c.max, hwm)
			c.mu.Unlock()
		}
	}
}

func (c *childPeak) value() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max
}

func (c *childPeak) stop() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
}

// removeTables deletes the given nftables tables in the node's namespace, if present.
func removeTables(cfg config, tables []string) error {
	for _, table := range tables {
		family, name, _ := strings.Cut(table, " ")
		list := exec.Command("ip", "netns", "exec", cfg.nodeNamespace, "nft", "list", "tables", family)
		out, err := list.Output()
		if err != nil {
			return fmt.Errorf("nft list tables: %w", err)
		}
		if !strings.Contains(string(out), "table "+table+"\n") {
			continue
		}
		del := exec.Command("ip", "netns", "exec", cfg.nodeNamespace, "nft", "delete", "table", family, name)
		if out, err := del.CombinedOutput(); err != nil {
			return fmt.Errorf("nft delete table %s: %v: %s", table, err, out)
		}
	}
	return nil
}

// rulesetHas says whether the proxy's tables in the node's namespace mention addr.
func rulesetHas(cfg config, tables []string, addr string) (bool, error) {
	for _, table := range tables {
		family, name, _ := strings.Cut(table, " ")
		out, err := exec.Command("ip", "netns", "exec", cfg.nodeNamespace, "nft", "list", "table", family, name).Output()
		if err != nil {
			continue // kube-proxy creates its ip6 table only on a dual-stack node
		}
		if containsAddress(string(out), addr) {
			return true, nil
		}
	}
	return false, nil
}

func logPath(cfg config, spec proxySpec, size int) string {
	return filepath.Join(cfg.workDir, fmt.Sprintf("%s-%d.log", spec.name, size))
}
