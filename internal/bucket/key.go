package bucket

import (
	"errors"
	"fmt"
	"strings"
)

// checkKey reports why key is not a valid object key, or nil. Valid keys are
// non-empty, relative, "/"-separated, without empty, "." or ".." segments and
// without nul bytes, so they map one to one onto paths below a root directory.
func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case strings.HasPrefix(key, "/"):
		return errors.New("key starts with /")
	case strings.ContainsRune(key, 0):
		return errors.New("key contains a nul byte")
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "..":
			return errors.New(`key has a ".." segment`)
		case ".":
			return errors.New(`key has a "." segment`)
		case "":
			return errors.New("key has an empty segment")
		}
	}
	return nil
}

// validateKey wraps checkKey's complaint in ErrBadKey.
func validateKey(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%w %q: %s", ErrBadKey, key, err.Error())
	}
	return nil
}

// validatePrefix accepts "" and any prefix of a valid key (a trailing "/" is
// allowed); anything else wraps ErrBadKey.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := checkKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("%w: prefix %q: %s", ErrBadKey, prefix, err.Error())
	}
	return nil
}
