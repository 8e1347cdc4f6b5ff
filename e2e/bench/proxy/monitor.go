package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// nfnlgrpNftables is NFNLGRP_NFTABLES (linux/netfilter/nfnetlink.h): the multicast group
// where nf_tables announces every committed change of the ruleset.
const nfnlgrpNftables = 7

const (
	monitorRcvBuf   = 64 << 20 // kube-proxy's transactions at 10k Services are large
	monitorDatagram = 1 << 20
	monitorPoll     = 200 * time.Millisecond // how often the reader checks whether to stop
)

// containsAddress says whether text holds addr as a whole address (10.0.0.1 is not in
// 10.0.0.12).
func containsAddress(text, addr string) bool {
	return containsWhole(text, addr, strings.Index)
}

// containsWhole says whether s holds the dotted address addr with neither a digit nor a dot
// just before it nor a digit just after it.
func containsWhole[T string | []byte](s, addr T, index func(s, sub T) int) bool {
	for off := 0; off <= len(s)-len(addr); {
		i := index(s[off:], addr)
		if i < 0 {
			return false
		}
		start, end := off+i, off+i+len(addr)
		if (start == 0 || !isDigit(s[start-1]) && s[start-1] != '.') && (end == len(s) || !isDigit(s[end])) {
			return true
		}
		off = start + 1
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// monitor listens to the nf_tables multicast group of the node's network namespace and
// records when each awaited address first shows up in a change the kernel announces: as
// text (kube-proxy's chain names, "endpoint-…__10.250.0.1/8080") or as the address's 4
// bytes (its dnat expressions, Ferry's set and map elements).
type monitor struct {
	fd     int
	done   chan struct{} // closed by stop
	exited chan struct{} // closed when the reader returns
	once   sync.Once

	mu        sync.Mutex
	written   map[string]time.Time     // awaited address → when its API write started
	pending   map[string]pattern       // awaited addresses not seen yet
	seen      map[string]time.Duration // address → latency from write to kernel
	overflows int                      // datagrams the kernel dropped: the socket was full
	readErr   error                    // what ended the reader early
}

// pattern is what an awaited address looks like in a netlink datagram.
type pattern struct {
	text []byte // dotted
	raw  []byte // 4 bytes in network order; nil for a non-IPv4 address
}

func newMonitor() *monitor {
	return &monitor{
		fd: -1, done: make(chan struct{}), exited: make(chan struct{}),
		written: map[string]time.Time{}, pending: map[string]pattern{}, seen: map[string]time.Duration{},
	}
}

// startMonitor joins the node's nf_tables group; it listens once it returns.
func startMonitor(ctx context.Context, cfg config) (*monitor, error) {
	fd, err := nftablesSocket("/run/netns/" + cfg.nodeNamespace)
	if err != nil {
		return nil, fmt.Errorf("nf_tables netlink socket in %s: %w", cfg.nodeNamespace, err)
	}
	m := newMonitor()
	m.fd = fd
	go m.read(ctx)
	return m, nil
}

// nftablesSocket opens a netlink socket in the network namespace at nsPath, bound to the
// nf_tables group. A socket stays in the namespace it was created in, so only its creation
// runs there, on a thread of its own.
func nftablesSocket(nsPath string) (int, error) {
	type opened struct {
		fd  int
		err error
	}
	result := make(chan opened, 1)
	go func() {
		runtime.LockOSThread()
		fd, restored, err := nftablesSocketOnThread(nsPath)
		if restored {
			runtime.UnlockOSThread()
		} // else the thread is in the wrong namespace: leave it locked, so it ends with this goroutine
		result <- opened{fd, err}
	}()
	r := <-result
	return r.fd, r.err
}

// nftablesSocketOnThread runs on a locked thread; restored says whether the thread is back
// in its own network namespace.
func nftablesSocketOnThread(nsPath string) (fd int, restored bool, err error) {
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, err
	}
	defer unix.Close(own)
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return -1, true, fmt.Errorf("setns %s: %w", nsPath, err)
	}
	fd, err = openNftablesSocket()
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, false, fmt.Errorf("setns back to the benchmark's namespace: %w", err)
	}
	return fd, true, err
}

func openNftablesSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, err
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, monitorRcvBuf); err != nil {
		// Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, monitorRcvBuf); err != nil {
			return fail("SO_RCVBUF", err)
		}
	}
	timeout := unix.NsecToTimeval(monitorPoll.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &timeout); err != nil {
		return fail("SO_RCVTIMEO", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (nfnlgrpNftables - 1)}); err != nil {
		return fail("bind to NFNLGRP_NFTABLES", err)
	}
	return fd, nil
}

// read receives the group's datagrams until stop or ctx ends, and times each on arrival.
func (m *monitor) read(ctx context.Context) {
	defer close(m.exited)
	buf := make([]byte, monitorDatagram)
	for {
		select {
		case <-m.done:
			return
		case <-ctx.Done():
			return
		default:
		}
		n, _, err := unix.Recvfrom(m.fd, buf, 0)
		at := time.Now()
		switch {
		case err == nil:
			m.match(buf[:n], at)
		case errors.Is(err, unix.ENOBUFS):
			m.mu.Lock()
			m.overflows++
			m.mu.Unlock()
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EINTR):
		default:
			m.mu.Lock()
			m.readErr = err
			m.mu.Unlock()
			return
		}
	}
}

// match records the latency of every awaited address that datagram holds and that was not
// seen before.
func (m *monitor) match(datagram []byte, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for addr, p := range m.pending {
		if (p.raw != nil && bytes.Contains(datagram, p.raw)) || containsWhole(datagram, p.text, bytes.Index) {
			m.seen[addr] = at.Sub(m.written[addr])
			delete(m.pending, addr)
		}
	}
}

// await registers addr just before its API write.
func (m *monitor) await(addr string) {
	p := pattern{text: []byte(addr)}
	if ip, err := netip.ParseAddr(addr); err == nil && ip.Is4() {
		raw := ip.As4()
		p.raw = raw[:]
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written[addr] = time.Now()
	m.pending[addr] = p
}

// latencies waits until every awaited address was seen or timeout passes, and returns the
// latencies seen and how many were not.
func (m *monitor) latencies(timeout time.Duration) ([]time.Duration, int) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		m.mu.Lock()
		all := len(m.pending) == 0
		m.mu.Unlock()
		if all {
			break
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.overflows > 0 {
		logf("warning: the nf_tables netlink socket overflowed %d times: the kernel dropped announcements, so some changes may be missed or timed late", m.overflows)
	}
	if m.readErr != nil {
		logf("warning: listening to nf_tables stopped early: %v", m.readErr)
	}
	out := make([]time.Duration, 0, len(m.seen))
	for _, d := range m.seen {
		out = append(out, d)
	}
	return out, len(m.pending)
}

// stop ends the reader (within monitorPoll) and closes the socket.
func (m *monitor) stop() {
	m.once.Do(func() {
		close(m.done)
		if m.fd < 0 {
			return
		}
		<-m.exited
		if err := unix.Close(m.fd); err != nil {
			logf("closing the nf_tables netlink socket: %v", err)
		}
	})
}
