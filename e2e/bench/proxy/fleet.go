package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Endpoint addresses are never dialled: the proxies only program them. The initial ones
// come from one range and every change's address from another, so a changed endpoint is
// recognisable in nf_tables' change announcements.
var (
	initialEndpoints = netip.MustParseAddr("10.128.0.0")
	changedEndpoints = netip.MustParseAddr("10.250.0.0")
)

const (
	servicePort  = 80
	endpointPort = 8080
	portName     = "http"
	createWorker = 16
)

func newClient(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	// Creating 10k Services and slices is setup, not the measured part: go fast.
	rc.QPS, rc.Burst = 1000, 2000
	return kubernetes.NewForConfig(rc)
}

// fleet holds the benchmark's Services, each with one EndpointSlice, and the latest version
// of every slice so a change is a plain update.
type fleet struct {
	client    kubernetes.Interface
	namespace string
	endpoints int
	slices    []*discoveryv1.EndpointSlice
	changed   int // changes made so far: the next change's address
}

func newFleet(ctx context.Context, client kubernetes.Interface, namespace string, endpoints int) (*fleet, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	_, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("namespace %s (left over from another run? the benchmark wants a fresh cluster): %w", namespace, err)
	}
	return &fleet{client: client, namespace: namespace, endpoints: endpoints}, nil
}

// growTo creates Services and their slices until there are n.
func (f *fleet) growTo(ctx context.Context, n int) error {
	start := len(f.slices)
	created := make([]*discoveryv1.EndpointSlice, n-start)
	indexes := make(chan int)
	errs := make(chan error, createWorker)
	var wg sync.WaitGroup
	for range createWorker {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range indexes {
				slice, err := f.create(ctx, i)
				if err != nil {
					errs <- err
					return
				}
				created[i-start] = slice
			}
		}()
	}
	var err error
feed:
	for i := start; i < n; i++ {
		select {
		case indexes <- i:
		case err = <-errs:
			break feed
		}
	}
	close(indexes)
	wg.Wait()
	if err == nil && len(errs) > 0 {
		err = <-errs
	}
	if err != nil {
		return err
	}
	f.slices = append(f.slices, created...)
	return nil
}

func (f *fleet) create(ctx context.Context, i int) (*discoveryv1.EndpointSlice, error) {
	name := fmt.Sprintf("s%05d", i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: portName, Port: servicePort, Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromInt32(endpointPort),
		}}},
	}
	if _, err := f.client.CoreV1().Services(f.namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("Service %s: %w", name, err)
	}
	slice := f.slice(name, i)
	created, err := f.client.DiscoveryV1().EndpointSlices(f.namespace).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("EndpointSlice of %s: %w", name, err)
	}
	return created, nil
}

func (f *fleet) slice(service string, i int) *discoveryv1.EndpointSlice {
	name, protocol, port, ready := portName, corev1.ProtocolTCP, int32(endpointPort), true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: service + "-bench",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: service,
				discoveryv1.LabelManagedBy:   "proxy-bench.ferry.dev",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &protocol, Port: &port}},
	}
	for j := range f.endpoints {
		addr := nthAddress(initialEndpoints, i*f.endpoints+j)
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{addr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	return slice
}

// change replaces one endpoint of the Service that the next change goes to with a fresh
// address. The stride is prime, so up to `size` consecutive changes go to as many different
// Services: each is a single-endpoint change. before runs just before the API write, with
// the new address.
func (f *fleet) change(ctx context.Context, before func(addr string)) error {
	k := f.changed
	f.changed++
	i := (k*7919 + 13) % len(f.slices)
	slice := f.slices[i].DeepCopy()
	addr := nthAddress(changedEndpoints, k).String()
	slice.Endpoints[k%len(slice.Endpoints)].Addresses = []string{addr}
	before(addr)
	updated, err := f.client.DiscoveryV1().EndpointSlices(f.namespace).Update(ctx, slice, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("EndpointSlice %s: %w", slice.Name, err)
	}
	f.slices[i] = updated
	return nil
}

// lastEndpoint is an address of the last Service created: present in a ruleset only once a
// sync covered every Service.
func (f *fleet) lastEndpoint() string {
	return f.slices[len(f.slices)-1].Endpoints[0].Addresses[0]
}

func nthAddress(base netip.Addr, n int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
