package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// rpcCall makes one call of a method with an empty request and returns
// its status code (for streams: the status of opening it and the first
// receive).
type rpcCall func(ctx context.Context, cc *grpc.ClientConn) error

// calls has one entry per method of every service the coordinator serves;
// TestEveryRPCIsInTheMatrix checks none is missing.
var calls = map[string]rpcCall{
	healthpb.Health_Check_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	},
	healthpb.Health_List_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(cc).List(ctx, &healthpb.HealthListRequest{})
		return err
	},
	healthpb.Health_Watch_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
		return recvErr(s, err)
	},
	cloudmlv1.AgentService_Register_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).Register(ctx, &cloudmlv1.RegisterRequest{})
		return err
	},
	cloudmlv1.AgentService_RenewCertificate_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).RenewCertificate(ctx, &cloudmlv1.RenewCertificateRequest{})
		return err
	},
	cloudmlv1.AgentService_Session_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := cloudmlv1.NewAgentServiceClient(cc).Session(ctx, &cloudmlv1.SessionRequest{})
		return recvErr(s, err)
	},
	cloudmlv1.AgentService_Heartbeat_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).Heartbeat(ctx, &cloudmlv1.HeartbeatRequest{})
		return err
	},
	cloudmlv1.AgentService_ReportTask_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).ReportTask(ctx, &cloudmlv1.ReportTaskRequest{})
		return err
	},
	cloudmlv1.AgentService_ReportTasks_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).ReportTasks(ctx, &cloudmlv1.ReportTasksRequest{Reports: []*cloudmlv1.ReportTaskRequest{{}}})
		return err
	},
	cloudmlv1.AgentService_PublishLogs_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).PublishLogs(ctx, &cloudmlv1.PublishLogsRequest{})
		return err
	},
	cloudmlv1.AgentService_ReportSwarm_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).ReportSwarm(ctx, &cloudmlv1.ReportSwarmRequest{Error: "matrix test"})
		return err
	},
	cloudmlv1.AgentService_ReportStage_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).ReportStage(ctx, &cloudmlv1.ReportStageRequest{})
		return err
	},
	cloudmlv1.AgentService_StreamLogs_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := cloudmlv1.NewAgentServiceClient(cc).StreamLogs(ctx)
		if err != nil {
			return err
		}
		// A refused stream fails Send with io.EOF; Recv has the status.
		if err := s.Send(&cloudmlv1.StreamLogsRequest{}); err != nil && err != io.EOF {
			return err
		}
		return recvErr(s, nil)
	},
	cloudmlv1.AgentService_FetchImage_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := cloudmlv1.NewAgentServiceClient(cc).FetchImage(ctx, &cloudmlv1.FetchImageRequest{})
		return recvErr(s, err)
	},
	cloudmlv1.AgentService_UploadImage_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := cloudmlv1.NewAgentServiceClient(cc).UploadImage(ctx)
		if err != nil {
			return err
		}
		_, err = s.CloseAndRecv()
		return err
	},
	cloudmlv1.AgentService_BucketToken_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewAgentServiceClient(cc).BucketToken(ctx, &cloudmlv1.BucketTokenRequest{})
		return err
	},
	cloudmlv1.JobService_SubmitJob_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewJobServiceClient(cc).SubmitJob(ctx, &cloudmlv1.SubmitJobRequest{})
		return err
	},
	cloudmlv1.JobService_GetJob_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewJobServiceClient(cc).GetJob(ctx, &cloudmlv1.GetJobRequest{})
		return err
	},
	cloudmlv1.JobService_ListJobs_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewJobServiceClient(cc).ListJobs(ctx, &cloudmlv1.ListJobsRequest{})
		return err
	},
	cloudmlv1.JobService_CancelJob_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewJobServiceClient(cc).CancelJob(ctx, &cloudmlv1.CancelJobRequest{})
		return err
	},
	cloudmlv1.JobService_DeleteJob_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewJobServiceClient(cc).DeleteJob(ctx, &cloudmlv1.DeleteJobRequest{})
		return err
	},
	cloudmlv1.JobService_SubscribeLogs_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := cloudmlv1.NewJobServiceClient(cc).SubscribeLogs(ctx, &cloudmlv1.SubscribeLogsRequest{})
		return recvErr(s, err)
	},
	cloudmlv1.JobService_PushImage_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := cloudmlv1.NewJobServiceClient(cc).PushImage(ctx)
		if err != nil {
			return err
		}
		_, err = s.CloseAndRecv()
		return err
	},
	cloudmlv1.JobService_ListImages_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewJobServiceClient(cc).ListImages(ctx, &cloudmlv1.ListImagesRequest{})
		return err
	},
	cloudmlv1.JobService_DeleteImage_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewJobServiceClient(cc).DeleteImage(ctx, &cloudmlv1.DeleteImageRequest{})
		return err
	},
	cloudmlv1.JobService_GetResults_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewJobServiceClient(cc).GetResults(ctx, &cloudmlv1.GetResultsRequest{})
		return err
	},
	cloudmlv1.ClusterService_GetClusterInfo_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).GetClusterInfo(ctx, &cloudmlv1.GetClusterInfoRequest{})
		return err
	},
	cloudmlv1.ClusterService_ListNodes_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).ListNodes(ctx, &cloudmlv1.ListNodesRequest{})
		return err
	},
	cloudmlv1.ClusterService_CreateJoinToken_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).CreateJoinToken(ctx, &cloudmlv1.CreateJoinTokenRequest{Label: "matrix"})
		return err
	},
	cloudmlv1.ClusterService_ListJoinTokens_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).ListJoinTokens(ctx, &cloudmlv1.ListJoinTokensRequest{})
		return err
	},
	cloudmlv1.ClusterService_RevokeJoinToken_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).RevokeJoinToken(ctx, &cloudmlv1.RevokeJoinTokenRequest{})
		return err
	},
	cloudmlv1.ClusterService_CreateCredential_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).CreateCredential(ctx, &cloudmlv1.CreateCredentialRequest{})
		return err
	},
	cloudmlv1.ClusterService_ListCredentials_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).ListCredentials(ctx, &cloudmlv1.ListCredentialsRequest{})
		return err
	},
	cloudmlv1.ClusterService_RevokeCredential_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).RevokeCredential(ctx, &cloudmlv1.RevokeCredentialRequest{})
		return err
	},
	cloudmlv1.ClusterService_RemoveNode_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).RemoveNode(ctx, &cloudmlv1.RemoveNodeRequest{})
		return err
	},
	cloudmlv1.ClusterService_ScalePool_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).ScalePool(ctx, &cloudmlv1.ScalePoolRequest{})
		return err
	},
	cloudmlv1.ClusterService_ListMachines_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).ListMachines(ctx, &cloudmlv1.ListMachinesRequest{})
		return err
	},
	cloudmlv1.ClusterService_DeleteMachines_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).DeleteMachines(ctx, &cloudmlv1.DeleteMachinesRequest{})
		return err
	},
	cloudmlv1.ClusterService_CollectGarbage_FullMethodName: func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := cloudmlv1.NewClusterServiceClient(cc).CollectGarbage(ctx, &cloudmlv1.CollectGarbageRequest{})
		return err
	},
}

// recvErr is the error of opening a stream, else of its first receive
// (io.EOF counts as OK).
func recvErr[T any](s interface{ Recv() (T, error) }, err error) error {
	if err != nil {
		return err
	}
	if _, err := s.Recv(); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// allowedCode is what an empty request gets from each method's handler,
// once the caller may call it.
var allowedCode = map[string]codes.Code{
	healthpb.Health_Check_FullMethodName:                     codes.OK,
	healthpb.Health_List_FullMethodName:                      codes.OK,
	healthpb.Health_Watch_FullMethodName:                     codes.OK,
	cloudmlv1.AgentService_Register_FullMethodName:           codes.InvalidArgument, // no CSR
	cloudmlv1.AgentService_RenewCertificate_FullMethodName:   codes.InvalidArgument, // no CSR
	cloudmlv1.AgentService_Session_FullMethodName:            codes.OK,
	cloudmlv1.AgentService_Heartbeat_FullMethodName:          codes.OK,
	cloudmlv1.AgentService_ReportTask_FullMethodName:         codes.FailedPrecondition, // no such attempt
	cloudmlv1.AgentService_ReportTasks_FullMethodName:        codes.OK,                 // the report's own result says no such attempt
	cloudmlv1.AgentService_PublishLogs_FullMethodName:        codes.FailedPrecondition,
	cloudmlv1.AgentService_ReportSwarm_FullMethodName:        codes.OK,
	cloudmlv1.AgentService_ReportStage_FullMethodName:        codes.OK,
	cloudmlv1.AgentService_StreamLogs_FullMethodName:         codes.FailedPrecondition,
	cloudmlv1.AgentService_FetchImage_FullMethodName:         codes.InvalidArgument,
	cloudmlv1.AgentService_UploadImage_FullMethodName:        codes.InvalidArgument,
	cloudmlv1.AgentService_BucketToken_FullMethodName:        codes.InvalidArgument, // names no bucket
	cloudmlv1.JobService_SubmitJob_FullMethodName:            codes.InvalidArgument,
	cloudmlv1.JobService_GetJob_FullMethodName:               codes.NotFound,
	cloudmlv1.JobService_ListJobs_FullMethodName:             codes.OK,
	cloudmlv1.JobService_CancelJob_FullMethodName:            codes.NotFound,
	cloudmlv1.JobService_DeleteJob_FullMethodName:            codes.NotFound,
	cloudmlv1.JobService_SubscribeLogs_FullMethodName:        codes.NotFound,
	cloudmlv1.JobService_PushImage_FullMethodName:            codes.InvalidArgument,
	cloudmlv1.JobService_ListImages_FullMethodName:           codes.OK,
	cloudmlv1.JobService_DeleteImage_FullMethodName:          codes.InvalidArgument,
	cloudmlv1.JobService_GetResults_FullMethodName:           codes.NotFound,
	cloudmlv1.ClusterService_GetClusterInfo_FullMethodName:   codes.OK,
	cloudmlv1.ClusterService_ListNodes_FullMethodName:        codes.OK,
	cloudmlv1.ClusterService_CreateJoinToken_FullMethodName:  codes.OK,
	cloudmlv1.ClusterService_ListJoinTokens_FullMethodName:   codes.OK,
	cloudmlv1.ClusterService_RevokeJoinToken_FullMethodName:  codes.NotFound,
	cloudmlv1.ClusterService_CreateCredential_FullMethodName: codes.InvalidArgument,
	cloudmlv1.ClusterService_ListCredentials_FullMethodName:  codes.OK,
	cloudmlv1.ClusterService_RevokeCredential_FullMethodName: codes.NotFound,
	cloudmlv1.ClusterService_RemoveNode_FullMethodName:       codes.NotFound,
	cloudmlv1.ClusterService_ScalePool_FullMethodName:        codes.Unavailable, // served without the provider started
	cloudmlv1.ClusterService_ListMachines_FullMethodName:     codes.OK,
	cloudmlv1.ClusterService_DeleteMachines_FullMethodName:   codes.InvalidArgument, // names nothing
	cloudmlv1.ClusterService_CollectGarbage_FullMethodName:   codes.Unavailable,
}

// served lists every method of every service the coordinator registers.
func served() []string {
	var out []string
	for _, sd := range []grpc.ServiceDesc{healthpb.Health_ServiceDesc, cloudmlv1.AgentService_ServiceDesc,
		cloudmlv1.JobService_ServiceDesc, cloudmlv1.ClusterService_ServiceDesc} {
		for _, m := range sd.Methods {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
		for _, s := range sd.Streams {
			out = append(out, "/"+sd.ServiceName+"/"+s.StreamName)
		}
	}
	return out
}

func TestEveryRPCIsInTheMatrix(t *testing.T) {
	for _, m := range served() {
		if _, ok := calls[m]; !ok {
			t.Errorf("%s has no call in the matrix test", m)
		}
		if _, ok := allowedCode[m]; !ok {
			t.Errorf("%s has no expected code in the matrix test", m)
		}
		if _, known := rolesFor(m); !known {
			t.Errorf("%s is not in the authorisation table (methodRoles)", m)
		}
	}
}

// identity is one kind of caller.
type identity struct {
	name  string
	creds credentials.TransportCredentials
	role  pki.Role // "" for callers that are not valid at all
	valid bool     // a certificate the coordinator accepts (or none at all)
}

// TestIdentityMatrix calls every RPC of every service as every kind of
// caller and checks each cell's code: {no certificate, another CA's,
// an expired node certificate, a removed node, a valid node, a valid
// client, the admin} × every method. It prints the matrix.
func TestIdentityMatrix(t *testing.T) {
	h := start(t, "")
	pool := h.caPool()
	withCert := func(pair *tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(pki.ClientTLS(pool, func() *tls.Certificate { return pair }))
	}
	other := testutil.NewPKI(t)
	node := newAgent(t, h, 1)
	removed := newAgent(t, h, 1)
	if _, err := h.cluster.RemoveNode(ctxT(t), &cloudmlv1.RemoveNodeRequest{NodeId: removed.id}); err != nil {
		t.Fatal(err)
	}
	expired := h.issueNodeCert(t, node.id, time.Millisecond)
	waitFor(t, "the short certificate to expire", func() bool { return time.Now().After(expired.Leaf.NotAfter) })
	client := h.newCredential(t, "alice", false)

	ids := []identity{
		{name: "no certificate", creds: credentials.NewTLS(pki.ClientTLS(pool, nil)), valid: true},
		{name: "another CA", creds: withCert(other.Pair(pki.RoleAdmin, "admin", time.Hour))},
		{name: "expired node", creds: withCert(expired)},
		{name: "removed node", creds: withCert(removed.cred)},
		{name: "valid node", creds: withCert(node.cred), role: pki.RoleNode, valid: true},
		{name: "valid client", creds: withCert(client), role: pki.RoleClient, valid: true},
		{name: "admin", creds: h.adminCreds(t), role: pki.RoleAdmin, valid: true},
	}
	methods := served()
	slices.Sort(methods)
	var table strings.Builder
	fmt.Fprintf(&table, "%-44s", "method")
	for _, id := range ids {
		fmt.Fprintf(&table, " | %-18s", id.name)
	}
	table.WriteString("\n")
	for _, m := range methods {
		fmt.Fprintf(&table, "%-44s", shortMethod(m))
		for _, id := range ids {
			want := expectedCode(m, id)
			cc := h.dialWith(id.creds)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			got := status.Code(calls[m](ctx, cc))
			cancel()
			cc.Close()
			mark := ""
			if got != want {
				mark = " (want " + want.String() + ")"
				t.Errorf("%s as %s: got %v, want %v", m, id.name, got, want)
			}
			fmt.Fprintf(&table, " | %-18s", got.String()+mark)
		}
		table.WriteString("\n")
	}
	t.Logf("identity × RPC matrix:\n%s", table.String())
}

// expectedCode is the code a caller gets for an empty request to m.
func expectedCode(m string, id identity) codes.Code {
	roles, _ := rolesFor(m)
	switch {
	case !id.valid:
		return codes.Unauthenticated
	case roles == nil:
		return allowedCode[m]
	case id.role == "":
		return codes.Unauthenticated
	case !hasRole(roles, id.role):
		return codes.PermissionDenied
	}
	return allowedCode[m]
}
