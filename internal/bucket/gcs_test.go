package bucket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// newFakeGCS starts an in-process fake-gcs-server on loopback and points
// STORAGE_EMULATOR_HOST at it, so Open goes through the real client.
func newFakeGCS(t *testing.T) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http",
		Host:   "127.0.0.1",
	})
	if err != nil {
		t.Fatalf("start fake-gcs-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatalf("fake-gcs-server url: %v", err)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", u.Host)
	return srv
}

func openGCSBucket(t *testing.T, rawURL string) (Bucket, Location) {
	t.Helper()
	b, loc, err := Open(context.Background(), rawURL)
	if err != nil {
		t.Fatalf("Open(%q): %v", rawURL, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, loc
}

func TestGCSConformance(t *testing.T) {
	srv := newFakeGCS(t)
	n := 0
	runConformance(t, func(t *testing.T) Bucket {
		n++
		name := fmt.Sprintf("conformance-%d", n)
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
		b, _ := openGCSBucket(t, "gs://"+name)
		return b
	})
}

func TestGCSOpenMissingBucket(t *testing.T) {
	newFakeGCS(t)
	_, _, err := Open(context.Background(), "gs://no-such-bucket/prefix")
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open error = %v, want ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Errorf("error %q does not say which bucket is missing", err)
	}
}

func TestGCSOpenLocationAndURL(t *testing.T) {
	srv := newFakeGCS(t)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "data-bucket"})
	b, loc := openGCSBucket(t, "gs://data-bucket/runs/7/")
	if want := (Location{Scheme: "gs", Bucket: "data-bucket", Key: "runs/7"}); loc != want {
		t.Fatalf("location = %+v, want %+v", loc, want)
	}
	key := path.Join(loc.Key, "out put.txt")
	put(t, b, key, "ok")
	if got, want := b.URL(key), "gs://data-bucket/runs/7/out%20put.txt"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	back, err := Parse(b.URL(key))
	if err != nil || back.Key != "runs/7/out put.txt" {
		t.Errorf("Parse(URL) = %+v, %v; want key runs/7/out put.txt", back, err)
	}
	// The object is visible to the fake's own view of the bucket too.
	obj, err := srv.GetObject("data-bucket", "runs/7/out put.txt")
	if err != nil || string(obj.Content) != "ok" {
		t.Errorf("fake server object = %q, %v; want %q", obj.Content, err, "ok")
	}
}

// TestGCSListRefusesHostileNames: an object whose name would escape a
// staging directory fails the listing instead of being staged or hidden;
// "dir/" placeholders are skipped.
func TestGCSListRefusesHostileNames(t *testing.T) {
	srv := newFakeGCS(t)
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "hostile", Name: "code/ok.m"}, Content: []byte("ok")})
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "hostile", Name: "code/sub/"}})
	b, _ := openGCSBucket(t, "gs://hostile")
	got, err := b.List(context.Background(), "code/")
	if err != nil || len(got) != 1 || got[0].Key != "code/ok.m" {
		t.Fatalf("List with a placeholder = %v, %v; want only code/ok.m", got, err)
	}
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "hostile", Name: "code/../../evil"}, Content: []byte("x")})
	_, err = b.List(context.Background(), "code/")
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "code/../../evil") {
		t.Fatalf("List with a hostile name: %v; want ErrBadKey naming the object", err)
	}
}

// TestGCSUnreachableEndpointFailsFast: an endpoint nobody listens on is an
// error that names it, not a hang.
func TestGCSUnreachableEndpointFailsFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("STORAGE_EMULATOR_HOST", addr)
	_, _, err = Open(context.Background(), "gs://nobody-home")
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Open against a closed port: %v; want an error naming %s", err, addr)
	}
}
