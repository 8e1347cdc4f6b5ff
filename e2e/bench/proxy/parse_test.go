package main

import (
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
	m := &monitor{written: map[string]time.Time{}, seen: map[string]time.Duration{}}
	m.await("10.250.0.1")
	written := m.written["10.250.0.1"]
	m.match("add chain ip kube-proxy endpoint-X__10.250.0.1/8080", written.Add(time.Second))
	m.match("add rule ip kube-proxy endpoint-X dnat to 10.250.0.1:8080", written.Add(2*time.Second))
	m.match("add rule inet ferry svc dnat ip to 10.250.0.2 . 8080", written.Add(3*time.Second))
	got, missed := m.latencies(0)
	if len(got) != 1 || got[0] != time.Second || missed != 0 {
		t.Fatalf("latencies = %v, missed %d; want [1s], 0", got, missed)
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
