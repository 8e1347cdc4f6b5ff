// Command ocibuild writes a single-layer container image from files on this machine, as a
// docker-archive tarball for `ctr -n k8s.io images import` (or `docker load`).
//
//	ocibuild -tag ferry.dev/ferry-proxy:dev -out proxy.tar -entrypoint /ferry-proxy \
//	    -file target/release/ferry-proxy=/ferry-proxy \
//	    -file /lib/x86_64-linux-gnu/libc.so.6=/lib/x86_64-linux-gnu/libc.so.6 ...
//
// It exists beside e2e/images/imgbuild (which packs exactly one static binary) because
// Ferry's Rust binaries link glibc: their image needs the binary plus the shared libraries
// `ldd` lists, placed at the paths the dynamic loader looks in. images/build-oci computes
// that list. No Docker engine and no registry are involved.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// file is one regular file of the image: its content comes from src on this machine
// (symlinks followed), and it lands at dst (an absolute path) with src's permission bits.
type file struct{ src, dst string }

func main() {
	var tags, files, envs, labels multi
	out := flag.String("out", "", "output docker-archive tarball")
	entry := flag.String("entrypoint", "", "image entrypoint (a path inside the image)")
	user := flag.String("user", "", "image user, numeric (e.g. 0 or 65532)")
	flag.Var(&tags, "tag", "image reference (repeatable)")
	flag.Var(&files, "file", "SRC=DST: copy SRC to DST in the image (repeatable)")
	flag.Var(&envs, "env", "image Env entry KEY=VALUE (repeatable)")
	flag.Var(&labels, "label", "image label KEY=VALUE (repeatable)")
	flag.Parse()
	if *out == "" || *entry == "" || len(tags) == 0 || len(files) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	fs, err := parseFiles(files)
	if err != nil {
		log.Fatalf("ocibuild: %v", err)
	}
	if err := build(*out, *entry, *user, tags, fs, envs, labels); err != nil {
		log.Fatalf("ocibuild: %v", err)
	}
}

func parseFiles(specs []string) ([]file, error) {
	var fs []file
	seen := map[string]bool{}
	for _, s := range specs {
		src, dst, ok := strings.Cut(s, "=")
		if !ok || src == "" || !path.IsAbs(dst) {
			return nil, fmt.Errorf("-file %q: want SRC=/absolute/destination", s)
		}
		dst = path.Clean(dst)
		if seen[dst] {
			continue // ldd lists a library once per binary; one copy is enough
		}
		seen[dst] = true
		fs = append(fs, file{src, dst})
	}
	return fs, nil
}

func build(out, entry, user string, tags []string, fs []file, envs, labels []string) error {
	layerTar, err := layer(fs)
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg := cf.DeepCopy()
	cfg.Architecture = "amd64"
	cfg.OS = "linux"
	cfg.Config.Entrypoint = []string{entry}
	cfg.Config.Env = envs
	if !slices.ContainsFunc(envs, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		cfg.Config.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/"}, envs...)
	}
	cfg.Config.User = user
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = map[string]string{}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		cfg.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{}
	for _, t := range tags {
		ref, err := name.NewTag(t)
		if err != nil {
			return fmt.Errorf("tag %q: %w", t, err)
		}
		refs[ref] = img
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// layer returns the layer tar: fs, their parent directories, /tmp, and an /etc/passwd and
// /etc/group naming root and nonroot (65532), so that both kinds of pods have a user.
// Entries are sorted and dated 1970, so the same inputs give the same image digest.
func layer(fs []file) ([]byte, error) {
	type entry struct {
		hdr  tar.Header
		data []byte
	}
	entries := map[string]entry{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			name := strings.TrimPrefix(d, "/") + "/"
			if _, ok := entries[name]; !ok {
				entries[name] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
			}
		}
	}
	addFile := func(dst string, mode int64, data []byte) {
		addDirs(dst)
		entries[strings.TrimPrefix(dst, "/")] = entry{
			hdr:  tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: mode, Size: int64(len(data))},
			data: data,
		}
	}
	entries["tmp/"] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}}
	addFile("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	addFile("/etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n"))
	for _, f := range fs {
		data, err := os.ReadFile(f.src) // follows symlinks: the image holds real files
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(f.src)
		if err != nil {
			return nil, err
		}
		addFile(f.dst, int64(st.Mode().Perm()), data)
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.ModTime = time.Unix(0, 0)
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
