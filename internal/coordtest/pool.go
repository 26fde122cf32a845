package coordtest

import (
	"crypto/x509"
	"errors"
)

func caPool(caPEM string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("no CA certificate")
	}
	return pool, nil
}
