package main

import (
	"slices"
	"testing"
	"time"
)

func TestContainsAddressMatchesWholeAddresses(t *testing.T) {
	text := "dnat ip to numgen random mod 2 map { 0 : 10.250.0.12 . 8080, 1 : 10.128.0.1 . 8080 }"
	for addr, want := range map[string]bool{
		"10.250.0.12": true, "10.128.0.1": true, "10.250.0.1": false, "0.250.0.12": false, "10.128.0.10": false,
	} {
		if got := containsAddress(text, addr); got != want {
			t.Errorf("containsAddress(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestMonitorTimesEachAwaitedAddressOnce(t *testing.T) {
	m := newMonitor()
	m.await("10.250.0.1")
	m.await("10.250.0.3")
	written := m.written["10.250.0.1"]
	writtenRaw := m.written["10.250.0.3"]
	// Datagrams stand in for nf_tables announcements: an attribute header, then its payload.
	m.match([]byte("\x2c\x00\x03\x00endpoint-X-ns/s/tcp/http__10.250.0.1/8080\x00"), written.Add(time.Second))
	m.match([]byte("\x08\x00\x01\x00\x0a\xfa\x00\x01"), written.Add(2*time.Second))
	m.match([]byte("\x0c\x00\x01\x00\x08\x00\x01\x00\x0a\xfa\x00\x03"), writtenRaw.Add(3*time.Second))
	m.match([]byte("\x08\x00\x01\x00\x0a\xfa\x00\x02 10.250.0.2"), written.Add(4*time.Second))
	got, missed := m.latencies(0)
	slices.Sort(got)
	if len(got) != 2 || got[0] != time.Second || got[1] != 3*time.Second || missed != 0 {
		t.Fatalf("latencies = %v, missed %d; want [1s 3s], 0", got, missed)
	}
	if _, ok := m.seen["10.250.0.2"]; ok {
		t.Error("an address that was not awaited was timed")
	}
}

func TestMonitorMatchesTextAddressesWhole(t *testing.T) {
	m := newMonitor()
	m.await("10.250.0.1")
	m.match([]byte("endpoint-X-ns/s/tcp/http__10.250.0.12/8080"), time.Now())
	m.match([]byte("endpoint-X-ns/s/tcp/http__110.250.0.1/8080"), time.Now())
	if _, missed := m.latencies(0); missed != 1 {
		t.Fatalf("10.250.0.1 was matched inside 10.250.0.12 or 110.250.0.1")
	}
	m.match([]byte("endpoint-X-ns/s/tcp/http__10.250.0.1/8080"), time.Now())
	if _, missed := m.latencies(0); missed != 0 {
		t.Fatalf("10.250.0.1 was not matched in its own chain name")
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(samples, q); got != want {
			t.Errorf("percentile(%v) = %v, want %v", q, got, want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of no samples is not 0")
	}
}

func TestSampleReadsOneSeries(t *testing.T) {
	metrics := "# HELP x\nferry_proxy_sync_duration_seconds_count{kind=\"partial\"} 7\n" +
		"ferry_proxy_sync_duration_seconds_count{kind=\"full\"} 2\nkubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"} 1.7e+09\n"
	if got := sample(metrics, `ferry_proxy_sync_duration_seconds_count{kind="full"}`); got != 2 {
		t.Errorf("ferry full count = %v, want 2", got)
	}
	if got := sample(metrics, `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}`); got != 1.7e9 {
		t.Errorf("kube-proxy timestamp = %v", got)
	}
	if got := sample(metrics, "absent"); got != 0 {
		t.Errorf("absent series = %v, want 0", got)
	}
}

func TestParseSizesWantsAscendingPositiveCounts(t *testing.T) {
	if got, err := parseSizes("1000, 10000"); err != nil || len(got) != 2 || got[1] != 10000 {
		t.Fatalf("parseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"10000,1000", "0", "x", "1000,1000"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted", bad)
		}
	}
}
