// Command imgbuild writes a single-layer image holding one static binary as a
// docker-archive tarball (importable with `ctr -n k8s.io images import`).
//
//	imgbuild -bin ./web -tag ferry.dev/e2e/web:v1 -out web-v1.tar [-entrypoint /web] [-arg x ...]
//
// Several -tag flags name the same image more than once. Images that need more
// than one binary (a shell, curl, ...) get a root filesystem as -layer TAR
// under the binary's layer; -bin is optional then, and without -bin or
// -entrypoint the image has no entrypoint (like a base image: Cmd only).
// An -env PATH=... replaces the default PATH=/.
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

func main() {
	var tags, args, envs, layers multi
	bin := flag.String("bin", "", "static binary to put into the image")
	out := flag.String("out", "", "output docker-archive tarball")
	entry := flag.String("entrypoint", "", "path of the binary inside the image (default /<basename of -bin>)")
	user := flag.String("user", "", "image config user (e.g. 65534)")
	flag.Var(&tags, "tag", "image reference (repeatable)")
	flag.Var(&args, "arg", "image Cmd argument (repeatable)")
	flag.Var(&envs, "env", "image Env entry KEY=VALUE (repeatable)")
	flag.Var(&layers, "layer", "tar file of a root filesystem, a layer under the binary's (repeatable, lowest first)")
	flag.Parse()
	if (*bin == "" && len(layers) == 0) || *out == "" || len(tags) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *entry == "" && *bin != "" {
		*entry = "/" + path.Base(*bin)
	}
	if err := build(*bin, *entry, *user, *out, tags, args, envs, layers); err != nil {
		log.Fatalf("imgbuild: %v", err)
	}
}

func build(bin, entry, user, out string, tags, args, envs, layers []string) error {
	img := empty.Image
	for _, f := range layers {
		l, err := tarball.LayerFromFile(f)
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return err
		}
	}
	if bin != "" {
		data, err := os.ReadFile(bin)
		if err != nil {
			return err
		}
		layerTar, err := layer(strings.TrimPrefix(entry, "/"), data)
		if err != nil {
			return err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(layerTar)), nil
		})
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg := cf.DeepCopy()
	cfg.Architecture = "amd64"
	cfg.OS = "linux"
	if entry != "" {
		cfg.Config.Entrypoint = []string{entry}
	}
	cfg.Config.Cmd = args
	env := []string{"PATH=/"}
	if slices.ContainsFunc(envs, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = nil
	}
	cfg.Config.Env = append(env, envs...)
	cfg.Config.User = user
	cfg.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
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

// layer returns a tar holding the binary at name plus /tmp and an
// /etc/passwd + /etc/group so that the image is usable by non-root users.
func layer(binName string, data []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := []string{"etc/", "tmp/"}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")},
		{binName, 0o755, data},
	}
	for _, f := range files {
		if dir := path.Dir(f.name); dir != "." && dir != "etc" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
