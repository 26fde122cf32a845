package coordinator

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/coordinator/dispatch"
	"github.com/cloudml/cloudml/coordinator/imagestore"
	"github.com/cloudml/cloudml/coordinator/logbroker"
	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/jobspec"
)

var (
	// ErrNotFound means the named job (or attempt) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid means a request is malformed; jobspec.ErrInvalid counts too.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnauthenticated means a bad join token or certificate.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied means the caller's role may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrAlreadyExists means a name is taken (a credential).
	ErrAlreadyExists = errors.New("already exists")
	// ErrStaleAttempt means a report or log batch names an attempt the
	// coordinator no longer wants from this node.
	ErrStaleAttempt = errors.New("stale attempt")
	// ErrLogsIncomplete means a terminal report came before its last log batch.
	ErrLogsIncomplete = errors.New("logs incomplete")
	// ErrNotRequested means a node sent something nobody asked it for (an
	// image upload with no export pending).
	ErrNotRequested = errors.New("not requested")
	// ErrNotEnded means a job must have ended for the request (a delete).
	ErrNotEnded = errors.New("job has not ended")
	// ErrInUse means something a job that has not ended needs (an image).
	ErrInUse = errors.New("in use")
	// ErrTooLarge means an input is larger than a size limit allows (a log
	// call, an image, a response that would not fit in a message).
	ErrTooLarge = errors.New("too large")
	// ErrShuttingDown means the coordinator is stopping.
	ErrShuttingDown = errors.New("coordinator is shutting down")
	// ErrPrecondition means a request the cluster's state refuses (a cost
	// limit, a second region).
	ErrPrecondition = errors.New("failed precondition")
	// ErrTokenUnavailable means Google's token service failed to give a
	// bucket token for now; the agent retries.
	ErrTokenUnavailable = errors.New("bucket token unavailable")
	// ErrStoreUnavailable means the state store failed to save a change,
	// which was not made; the coordinator serves again once it works.
	ErrStoreUnavailable = errors.New("state store unavailable")
)

// kindError gives an error a sentinel kind while keeping its own message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// errorf returns an error of the given kind whose message is the format.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// toStatus maps an error to a gRPC status; nil stays nil. It is the only
// place that knows about codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var code codes.Code
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, imagestore.ErrNotFound),
		errors.Is(err, logbroker.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrInvalid), errors.Is(err, jobspec.ErrInvalid), errors.Is(err, imagestore.ErrInvalid),
		errors.Is(err, provider.ErrInvalid), errors.Is(err, logbroker.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrTooLarge), errors.Is(err, provider.ErrCapacity), errors.Is(err, logbroker.ErrTooLarge):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, ErrPermissionDenied):
		code = codes.PermissionDenied
	case errors.Is(err, ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, ErrStaleAttempt), errors.Is(err, ErrNotRequested), errors.Is(err, ErrNotEnded),
		errors.Is(err, ErrInUse), errors.Is(err, ErrPrecondition), errors.Is(err, provider.ErrUnsupported),
		errors.Is(err, ErrNoGoogleCredentials):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrLogsIncomplete), errors.Is(err, ErrShuttingDown), errors.Is(err, ErrVerifyUnavailable),
		errors.Is(err, logbroker.ErrLogsIncomplete), errors.Is(err, logbroker.ErrStopped),
		errors.Is(err, dispatch.ErrEnded), errors.Is(err, dispatch.ErrStopped),
		errors.Is(err, provider.ErrNotStarted), errors.Is(err, ErrTokenUnavailable), errors.Is(err, ErrStoreUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	default:
		code = codes.Internal
	}
	return status.Error(code, err.Error())
}
