package bucket

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Location
	}{
		{"gs://bucket", Location{Scheme: "gs", Bucket: "bucket"}},
		{"gs://bucket/", Location{Scheme: "gs", Bucket: "bucket"}},
		{"gs://my-bucket.v2/some/prefix", Location{Scheme: "gs", Bucket: "my-bucket.v2", Key: "some/prefix"}},
		{"gs://bucket/some/prefix/", Location{Scheme: "gs", Bucket: "bucket", Key: "some/prefix"}},
		{"gs://bucket/a%20b", Location{Scheme: "gs", Bucket: "bucket", Key: "a b"}},
		{"GS://bucket/k", Location{Scheme: "gs", Bucket: "bucket", Key: "k"}},
		{"file:///abs/dir", Location{Scheme: "file", Bucket: "/abs/dir"}},
		{"file:///abs/dir/", Location{Scheme: "file", Bucket: "/abs/dir"}},
		{"file:///abs/dir/more/levels", Location{Scheme: "file", Bucket: "/abs/dir/more/levels"}},
		{"file://localhost/srv/b", Location{Scheme: "file", Bucket: "/srv/b"}},
		{"file:///tmp/my%20dir", Location{Scheme: "file", Bucket: "/tmp/my dir"}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"bucket",
		"/abs/dir",
		"relative/dir",
		"s3://bucket/x",
		"http://host/x",
		"gs://",
		"gs:///prefix",
		"gs:bucket",
		"gs://bucket/../x",
		"gs://bucket/a/../../x",
		"gs://bucket/a//b",
		"gs://Bucket",
		"gs://b",
		"gs://-bucket",
		"gs://bucket:80/x",
		"gs://user@bucket",
		"gs://bucket/x?q=1",
		"gs://bucket/x#frag",
		"file://relative/dir",
		"file:relative/dir",
		"file://./dir",
		"file:///abs/../etc",
		"file:///",
		"file://",
	} {
		_, err := Parse(in)
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("Parse(%q) error = %v, want ErrBadURL", in, err)
			continue
		}
		if !strings.Contains(err.Error(), acceptedForms) {
			t.Errorf("Parse(%q) error %q does not state the accepted forms", in, err)
		}
	}
}

func TestJoinAndString(t *testing.T) {
	tests := []struct {
		base, key, want string
	}{
		{"gs://b", "k", "gs://b/k"},
		{"gs://b/", "/k/x", "gs://b/k/x"},
		{"gs://b/pre", "", "gs://b/pre"},
		{"gs://b/pre/", "a b#c?d%e", "gs://b/pre/a%20b%23c%3Fd%25e"},
		{"file:///srv/bucket", "results/1/out.txt", "file:///srv/bucket/results/1/out.txt"},
	}
	for _, tt := range tests {
		if got := Join(tt.base, tt.key); got != tt.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tt.base, tt.key, got, tt.want)
		}
	}
	for _, in := range []string{"gs://bkt", "gs://bkt/x/y", "gs://bkt/a%20b", "file:///srv/my%20bucket"} {
		loc, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if got := loc.String(); got != in {
			t.Errorf("Parse(%q).String() = %q", in, got)
		}
	}
	loc, err := Parse(Join("gs://bkt/pre", "a b#c?d%e"))
	if err != nil || loc.Key != "pre/a b#c?d%e" {
		t.Errorf("Parse(Join(...)) = %+v, %v; want key %q", loc, err, "pre/a b#c?d%e")
	}
}
