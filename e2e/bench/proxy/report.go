package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"
)

const mib = 1 << 20

func printReport(w io.Writer, results []result) {
	fmt.Fprintln(w, "\nFerry (nftables) vs kube-proxy (nftables), same node, same run")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "services\tendpoints\tproxy\tfull sync s\tits own sync s\tp50 ms\tp99 ms\tmax ms\tmissed\t"+
		"RSS MiB\tpeak RSS MiB\tnft peak MiB\tCPU s sync\tCPU s churn\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t\n",
			r.services, r.endpoints, r.proxy, r.fullSync.Seconds(), r.ownSync,
			millis(percentile(r.latencies, 0.50)), millis(percentile(r.latencies, 0.99)),
			millis(percentile(r.latencies, 1)), r.missed,
			float64(r.afterChurn.rss)/mib, float64(r.afterChurn.peakRSS)/mib, float64(r.childPeak)/mib,
			r.afterSync.totalCPU(), r.afterChurn.totalCPU()-r.afterSync.totalCPU())
	}
	tw.Flush()
	printRatios(w, results)
	fmt.Fprintln(w, "\nfull sync: from the proxy's start (including its initial list of every object) until its first sync is in the kernel;")
	fmt.Fprintln(w, "pNN: one endpoint changed every interval, from the API write until the kernel's nf_tables announces a change holding the new endpoint; CPU includes the nft processes a proxy runs.")
}

// printRatios prints kube-proxy's figure over Ferry's for each size.
func printRatios(w io.Writer, results []result) {
	bySize := map[int]map[string]result{}
	var sizes []int
	for _, r := range results {
		if bySize[r.services] == nil {
			bySize[r.services] = map[string]result{}
			sizes = append(sizes, r.services)
		}
		bySize[r.services][r.proxy] = r
	}
	fmt.Fprintln(w, "\nkube-proxy / Ferry (above 1: Ferry is faster or smaller)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "services\tfull sync\tp50\tp99\tRSS\tCPU sync\tCPU churn\t")
	for _, size := range sizes {
		f, okF := bySize[size]["ferry-proxy"]
		k, okK := bySize[size]["kube-proxy"]
		if !okF || !okK {
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", size,
			ratio(k.fullSync.Seconds(), f.fullSync.Seconds()),
			ratio(percentile(k.latencies, 0.5).Seconds(), percentile(f.latencies, 0.5).Seconds()),
			ratio(percentile(k.latencies, 0.99).Seconds(), percentile(f.latencies, 0.99).Seconds()),
			ratio(float64(k.afterChurn.rss), float64(f.afterChurn.rss)),
			ratio(k.afterSync.totalCPU(), f.afterSync.totalCPU()),
			ratio(k.afterChurn.totalCPU()-k.afterSync.totalCPU(), f.afterChurn.totalCPU()-f.afterSync.totalCPU()))
	}
	tw.Flush()
}

func (u usage) totalCPU() float64 { return u.cpu + u.childCPU }

// percentile is the nearest-rank percentile; 0 for no samples.
func percentile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(rank, 0)]
}

func millis(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", a/b)
}
