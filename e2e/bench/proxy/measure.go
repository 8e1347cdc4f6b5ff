package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// result is one proxy at one size.
type result struct {
	proxy      string
	services   int
	endpoints  int
	fullSync   time.Duration // start → the first sync is in the kernel
	ownSync    float64       // seconds the proxy reports for that sync
	latencies  []time.Duration
	missed     int // changes never seen in the kernel
	afterSync  usage
	afterChurn usage
	childPeak  uint64 // largest child process (nft) seen, bytes
}

func measure(ctx context.Context, cfg config, f *fleet, spec proxySpec, size int) (result, error) {
	r := result{proxy: spec.name, services: size, endpoints: size * cfg.endpointsPerService}
	if err := removeTables(cfg, spec.tables); err != nil {
		return r, err
	}
	p, err := startProxy(cfg, spec, logPath(cfg, spec, size))
	if err != nil {
		return r, err
	}
	defer func() {
		p.stop()
		if err := removeTables(cfg, spec.tables); err != nil {
			logf("cleaning up after %s: %v", spec.name, err)
		}
	}()
	if err := waitFullSync(ctx, cfg, f, spec, p, &r); err != nil {
		return r, fmt.Errorf("%w (log: %s)", err, logPath(cfg, spec, size))
	}
	if r.afterSync, err = p.usage(); err != nil {
		return r, err
	}
	logf("%s: full sync in %.1fs; %d changes, one every %s", spec.name, r.fullSync.Seconds(), cfg.changes, cfg.changeInterval)
	if err := churn(ctx, cfg, f, &r); err != nil {
		return r, err
	}
	if r.afterChurn, err = p.usage(); err != nil {
		return r, err
	}
	r.childPeak = p.peak.value()
	return r, nil
}

// pollInterval grows with the wait, from 100 ms to 1 s: fine where syncs are short, and
// rare where they are long, because a scrape is not free (ferry-proxy reads its connection
// counters from the kernel for each one, a dump of every rule of its table).
func pollInterval(waited time.Duration) time.Duration {
	return min(100*time.Millisecond+waited/10, time.Second)
}

// waitFullSync waits until the proxy reports its first sync and the kernel's ruleset holds
// the last Service's endpoints.
func waitFullSync(ctx context.Context, cfg config, f *fleet, spec proxySpec, p *proxyProcess, r *result) error {
	deadline := time.Now().Add(cfg.syncTimeout)
	for time.Now().Before(deadline) {
		metrics, err := p.metrics(ctx, cfg)
		if errors.Is(err, errProxyExited) {
			return err
		}
		if done, seconds := spec.firstSync(metrics); done {
			at := time.Since(p.started)
			ok, err := rulesetHas(cfg, spec.tables, f.lastEndpoint())
			if err != nil {
				return err
			}
			if ok {
				r.fullSync, r.ownSync = at, seconds
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval(time.Since(p.started))):
		}
	}
	return fmt.Errorf("no complete sync within %s", cfg.syncTimeout)
}

// churn writes single-endpoint changes at a fixed rate, whatever the proxy's progress (as
// a busy cluster does), and times each until the kernel shows it.
func churn(ctx context.Context, cfg config, f *fleet, r *result) error {
	m, err := startMonitor(ctx, cfg)
	if err != nil {
		return err
	}
	defer m.stop()
	tick := time.NewTicker(cfg.changeInterval)
	defer tick.Stop()
	for range cfg.changes {
		if err := f.change(ctx, m.await); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	r.latencies, r.missed = m.latencies(2 * time.Minute)
	return nil
}
