package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// changedAddress matches an address of changedEndpoints in `nft monitor` output, also inside
// kube-proxy's chain names ("endpoint-…__10.250.0.1/8080").
var changedAddress = regexp.MustCompile(`(?:^|[^0-9.])(10\.250\.\d{1,3}\.\d{1,3})(?:$|[^0-9])`)

// containsAddress says whether text holds addr as a whole address (10.0.0.1 is not in
// 10.0.0.12).
func containsAddress(text, addr string) bool {
	re := regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(addr) + `($|[^0-9])`)
	return re.MatchString(text)
}

// monitor follows `nft monitor new` in the node's namespace and records when each awaited
// address first shows up in the kernel's ruleset events.
type monitor struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	written map[string]time.Time     // awaited address → when its API write started
	seen    map[string]time.Duration // address → latency from write to kernel
	probe   chan struct{}
}

const probeTable = "ferry_bench_probe"

func startMonitor(ctx context.Context, cfg config) (*monitor, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", cfg.nodeNamespace, "stdbuf", "-oL", "nft", "monitor", "new")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &monitor{cmd: cmd, written: map[string]time.Time{}, seen: map[string]time.Duration{}, probe: make(chan struct{}, 1)}
	go m.follow(bufio.NewScanner(out))
	if err := m.waitListening(cfg); err != nil {
		m.stop()
		return nil, err
	}
	return m, nil
}

func (m *monitor) follow(lines *bufio.Scanner) {
	lines.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for lines.Scan() {
		at := time.Now()
		line := lines.Text()
		if strings.Contains(line, probeTable) {
			select {
			case m.probe <- struct{}{}:
			default:
			}
		}
		m.match(line, at)
	}
}

func (m *monitor) match(line string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, found := range changedAddress.FindAllStringSubmatch(line, -1) {
		addr := found[1]
		if written, ok := m.written[addr]; ok {
			if _, done := m.seen[addr]; !done {
				m.seen[addr] = at.Sub(written)
			}
		}
	}
}

// waitListening adds and deletes a probe table until the monitor reports it: nft reads the
// whole ruleset before it listens, which takes a while at 10k Services.
func (m *monitor) waitListening(cfg config) error {
	nft := func(args ...string) error {
		cmd := exec.Command("ip", append([]string{"netns", "exec", cfg.nodeNamespace, "nft"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft %v: %v: %s", args, err, out)
		}
		return nil
	}
	defer func() { _ = nft("delete", "table", "inet", probeTable) }()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		if err := nft("add", "table", "inet", probeTable); err != nil {
			return err
		}
		select {
		case <-m.probe:
			return nil
		case <-time.After(time.Second):
		}
		if err := nft("delete", "table", "inet", probeTable); err != nil {
			return err
		}
	}
	return fmt.Errorf("nft monitor reported nothing for 2 minutes")
}

// await registers addr just before its API write.
func (m *monitor) await(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written[addr] = time.Now()
}

// latencies waits until every awaited address was seen or timeout passes, and returns the
// latencies seen and how many were not.
func (m *monitor) latencies(timeout time.Duration) ([]time.Duration, int) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		m.mu.Lock()
		all := len(m.seen) == len(m.written)
		m.mu.Unlock()
		if all {
			break
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]time.Duration, 0, len(m.seen))
	for _, d := range m.seen {
		out = append(out, d)
	}
	return out, len(m.written) - len(m.seen)
}

func (m *monitor) stop() {
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
}
