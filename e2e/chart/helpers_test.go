// Package chart tests the Helm chart in helm/ferry.
//
// Offline (no cluster): CRD copy drift, `helm lint`, the values schema, and the rendered
// manifests decoded strictly into Kubernetes 1.34's API types (an unknown or misspelt field
// fails), plus the chart's promises: RBAC, security contexts, the proxy's config file.
// With a cluster (KUBECONFIG): every rendered object applied with --dry-run=server.
// With FERRY_E2E_HELM_INSTALL=1: a real install and uninstall (install_test.go).
//
// helm is $HELM, else `helm` on PATH (`source e2e/cluster/env`), else `go tool helm`
// (e2e/go.mod pins it; the first run builds it).
package chart

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"
)

// kubeVersion is the cluster version the chart is rendered for (e2e/go.mod's Kubernetes).
const kubeVersion = "1.34.4"

var (
	_, thisFile, _, _ = runtime.Caller(0)
	e2eDir            = filepath.Join(filepath.Dir(thisFile), "..")
	repoRoot          = filepath.Join(e2eDir, "..")
	chartDir          = filepath.Join(repoRoot, "helm", "ferry")
)

// helmCmd returns the command line that runs helm.
func helmCmd() []string {
	if h := os.Getenv("HELM"); h != "" {
		return []string{h}
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return []string{h}
	}
	return []string{"go", "tool", "helm"}
}

// runHelm runs helm with args and returns stdout, and an error carrying stderr.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return run(t, "", append(helmCmd(), args...)...)
}

func run(t testing.TB, stdin string, argv ...string) (string, error) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, argv[0], argv[1:]...)
	cmd.Dir = e2eDir // for `go tool helm`
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// template renders the chart as release "ferry" in kube-system, CRDs and hooks included.
// sets are --set arguments (key=value).
func template(t testing.TB, sets ...string) string {
	t.Helper()
	args := []string{"template", "ferry", chartDir, "--namespace", "kube-system",
		"--kube-version", kubeVersion, "--include-crds"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return out
}

// object is one rendered object, parsed, with its source text for decodeStrict (duplicate
// keys are lost once the text is parsed into a map).
type object struct {
	*unstructured.Unstructured
	raw []byte
}

// rendered is the chart's output, split into objects.
type rendered []object

func render(t testing.TB, sets ...string) rendered {
	t.Helper()
	return splitYAML(t, template(t, sets...))
}

func splitYAML(t testing.TB, manifests string) rendered {
	t.Helper()
	var objs rendered
	docs := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("rendered YAML does not split: %v", err)
		}
		u := &unstructured.Unstructured{}
		if err := sigsyaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if len(u.Object) == 0 {
			continue // a template that rendered nothing
		}
		objs = append(objs, object{u, doc})
	}
}

// get returns the object of that kind and name, failing the test if there is none.
func (r rendered) get(t testing.TB, kind, name string) object {
	t.Helper()
	for _, o := range r {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q in the rendered chart (have %v)", kind, name, r.names())
	return object{}
}

func (r rendered) has(kind, name string) bool {
	for _, o := range r {
		if o.GetKind() == kind && o.GetName() == name {
			return true
		}
	}
	return false
}

func (r rendered) names() []string {
	var s []string
	for _, o := range r {
		s = append(s, o.GetKind()+"/"+o.GetName())
	}
	return s
}

// strictScheme knows the built-in API types and CRDs.
var strictScheme = func() *kruntime.Scheme {
	s := kruntime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// typed decodes o strictly into its Go API type: unknown fields, duplicate fields and wrong
// types are errors. into must be a pointer to that type.
func typed(t testing.TB, o object, into kruntime.Object) {
	t.Helper()
	if err := decodeStrict(o, into); err != nil {
		t.Fatalf("%s/%s: %v", o.GetKind(), o.GetName(), err)
	}
}

func decodeStrict(o object, into kruntime.Object) error {
	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, strictScheme, strictScheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	_, _, err := ser.Decode(o.raw, nil, into)
	return err
}
