package bucket

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// acceptedForms is appended to every ErrBadURL message.
const acceptedForms = "want gs://bucket[/prefix] or file:///absolute/dir"

// Parse parses gs://bucket[/prefix] or file:///abs/dir. For gs, Bucket is the
// bucket name and Key the prefix without leading or trailing slashes; for
// file, Bucket is the whole cleaned absolute path and Key is "". Anything else
// (relative paths, other schemes, empty names, ".." segments) wraps ErrBadURL.
func Parse(rawURL string) (Location, error) {
	bad := func(why string) (Location, error) {
		return Location{}, fmt.Errorf("%w %q: %s; %s", ErrBadURL, rawURL, why, acceptedForms)
	}
	if rawURL == "" {
		return bad("empty url")
	}
	if strings.ContainsRune(rawURL, 0) {
		return bad("contains a nul byte")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return bad(err.Error())
	}
	if u.Opaque != "" {
		return bad("missing // after the scheme")
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return bad("user info, query and fragment are not allowed")
	}
	switch u.Scheme {
	case "gs":
		return parseGS(u, bad)
	case "file":
		return parseFile(u, bad)
	case "":
		return bad("missing scheme")
	default:
		return bad(fmt.Sprintf("unsupported scheme %q", u.Scheme))
	}
}

func parseGS(u *url.URL, bad func(string) (Location, error)) (Location, error) {
	if u.Host == "" {
		return bad("empty bucket name")
	}
	if u.Port() != "" || strings.Contains(u.Host, ":") {
		return bad("bucket name has a port")
	}
	if err := validBucketName(u.Host); err != "" {
		return bad(err)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := checkKey(prefix); err != nil {
			return bad("bad prefix: " + err.Error())
		}
	}
	return Location{Scheme: "gs", Bucket: u.Host, Key: prefix}, nil
}

func parseFile(u *url.URL, bad func(string) (Location, error)) (Location, error) {
	if u.Host != "" && u.Host != "localhost" {
		return bad(fmt.Sprintf("file url has host %q (relative paths are not allowed)", u.Host))
	}
	p := u.Path
	if !strings.HasPrefix(p, "/") {
		return bad("file path must be absolute")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return bad(`".." segments are not allowed`)
		}
	}
	p = path.Clean(p)
	if p == "/" {
		return bad("the filesystem root cannot be a bucket")
	}
	return Location{Scheme: "file", Bucket: p}, nil
}

// validBucketName checks GCS naming rules loosely: 3 to 222 characters of
// lowercase letters, digits, '-', '_' and '.', starting and ending with a
// letter or digit. It returns "" when name is valid.
func validBucketName(name string) string {
	if len(name) < 3 || len(name) > 222 {
		return fmt.Sprintf("bucket name %q must be 3 to 222 characters", name)
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !alnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Sprintf("bucket name %q may only hold lowercase letters, digits, '-', '_' and '.'", name)
		}
	}
	if !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return fmt.Sprintf("bucket name %q must start and end with a letter or digit", name)
	}
	return ""
}

// String returns the location as a URL (the inverse of Parse).
func (l Location) String() string {
	var base string
	switch l.Scheme {
	case "file":
		base = "file://" + escapePath(l.Bucket)
	default:
		base = l.Scheme + "://" + l.Bucket
	}
	return Join(base, l.Key)
}

// Join appends key to a bucket URL, escaping only what a URL needs escaped
// ('%', '?', '#', spaces), so Parse(Join(u, k)) yields key k under u's prefix.
// An empty key returns bucketURL unchanged.
func Join(bucketURL, key string) string {
	key = strings.TrimLeft(key, "/")
	if key == "" {
		return bucketURL
	}
	return strings.TrimRight(bucketURL, "/") + "/" + escapePath(key)
}

// escapePath escapes p for use as (part of) a URL path.
func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}
