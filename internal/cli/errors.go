package cli

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/bucket"
)

// explain turns an error into a message that says what to do next.
func explain(err error, addr string) string {
	if errors.Is(err, bucket.ErrNotExist) {
		return err.Error()
	}
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Sprintf("cannot reach the coordinator at %s: %s\n"+
			"  is 'coordinator serve' running? Point the client at it with --coordinator ADDR or CLOUDML_COORDINATOR.", addr, st.Message())
	case codes.NotFound:
		return st.Message() + " (see 'cloudml-client list')"
	case codes.InvalidArgument:
		return "the coordinator rejected the request: " + st.Message()
	case codes.DeadlineExceeded:
		return fmt.Sprintf("the coordinator at %s did not answer in time: %s", addr, st.Message())
	default:
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
}
