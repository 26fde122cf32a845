package cli

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/bucket"
)

// explain turns an error into a message that says what to do next.
func explain(err error, addr string) string {
	if errors.Is(err, bucket.ErrNotExist) {
		return err.Error()
	}
	var gs interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &gs) {
		return err.Error()
	}
	st := gs.GRPCStatus()
	// The message with its context ("get job x: ..."), without gRPC's
	// "rpc error: code = ... desc =" in the middle.
	msg := strings.Replace(err.Error(), st.Err().Error(), st.Message(), 1)
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Sprintf("cannot reach the coordinator at %s: %s\n"+
			"  is 'coordinator serve' running? Point the client at it with --coordinator ADDR or CLOUDML_COORDINATOR.", addr, msg)
	case codes.NotFound:
		return msg + " (see 'cloudml-client list')"
	case codes.InvalidArgument:
		return "the coordinator rejected the request: " + msg
	case codes.Unauthenticated:
		return fmt.Sprintf("the coordinator at %s does not accept this credential: %s", addr, msg)
	case codes.PermissionDenied:
		return msg + "\n  this takes an admin credential (the one 'coordinator serve' writes, or 'credential create --admin')"
	case codes.DeadlineExceeded:
		return fmt.Sprintf("the coordinator at %s did not answer in time: %s", addr, msg)
	default:
		return fmt.Sprintf("%s: %s", st.Code(), msg)
	}
}
