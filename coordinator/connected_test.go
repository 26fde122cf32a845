package coordinator

import (
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ListNodes says whether each node's session is open: a node is READY
// once registered, and connected only while its session is open.
func TestListNodesSaysConnected(t *testing.T) {
	h := start(t, "")
	a := newAgent(t, h, 1)
	node := func() *cloudmlv1.Node {
		t.Helper()
		resp, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
		if err != nil || len(resp.GetNodes()) != 1 {
			t.Fatalf("ListNodes = %v, %v; want one node", resp, err)
		}
		return resp.GetNodes()[0]
	}
	if n := node(); n.GetState() != cloudmlv1.NodeState_NODE_STATE_READY || n.GetConnected() {
		t.Errorf("registered without a session: %v, connected %v; want ready, not connected", n.GetState(), n.GetConnected())
	}
	a.open()
	if n := node(); !n.GetConnected() {
		t.Errorf("with its session open: connected %v, want true", n.GetConnected())
	}
	a.closeSession()
	waitFor(t, "not connected once the session closed", func() bool { return !node().GetConnected() })
}
