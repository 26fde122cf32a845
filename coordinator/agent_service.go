package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/coordinator/dispatch"
	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// agentServer implements AgentService.
type agentServer struct {
	cloudmlv1.UnimplementedAgentServiceServer
	c *Coordinator
}

// Register trades a join token and a CSR for a node identity and
// certificate.
func (s *agentServer) Register(ctx context.Context, req *cloudmlv1.RegisterRequest) (*cloudmlv1.RegisterResponse, error) {
	resp, err := s.c.register(ctx, req)
	if err != nil {
		s.c.machines.noteRefusal(req.GetProviderId(), s.c.tokenLabel(req.GetJoinToken()), err)
	}
	return resp, toStatus(err)
}

// register creates a node for a valid join token, once Config.VerifyNode
// (verify.go) accepts the machine. The token's use and the node are stored
// in one transaction, and registrations are serialised up to queueing it
// (the token's use shows in memory from then on), so a single-use token
// registers one node however many try at once. The wait for the disk is
// outside registerMu: a thousand nodes registering share group commits.
func (c *Coordinator) register(ctx context.Context, req *cloudmlv1.RegisterRequest) (*cloudmlv1.RegisterResponse, error) {
	csr, err := pki.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, errorf(ErrInvalid, "register: %v", err)
	}
	if len(req.GetProviderId()) > maxProviderID {
		return nil, errorf(ErrInvalid, "register: provider id of %d bytes is longer than %d", len(req.GetProviderId()), maxProviderID)
	}
	keySum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	key := hex.EncodeToString(keySum[:])
	if resp, err := c.registerAgain(req, key); resp != nil || err != nil {
		return resp, err
	}
	if c.cfg.VerifyNode != nil {
		tok, err := c.useToken(req.GetJoinToken(), time.Now())
		if err != nil {
			return c.orRepeat(req, key, err)
		}
		if err := c.verifyNode(ctx, req, tok.ID, tok.Label); err != nil {
			return nil, err
		}
	}
	au := c.trust
	au.registerMu.Lock()
	now := time.Now()
	tok, err := c.useToken(req.GetJoinToken(), now)
	if err != nil {
		au.registerMu.Unlock()
		// A repeat that raced the call it repeats waited for it here.
		return c.orRepeat(req, key, err)
	}
	maxSlots, maxMem := c.nodeCaps(tok)
	var (
		rec    *store.Node
		issued *pki.Issued
	)
	seq, err := c.lockedSeq(func() error {
		if c.stopping {
			return ErrShuttingDown
		}
		id := c.nextNodeID()
		var err error
		if issued, err = au.ca.SignCSR(req.GetCsr(), pki.RoleNode, id, c.cfg.NodeCertTTL); err != nil {
			return errorf(ErrInvalid, "register: %v", err)
		}
		rec = &store.Node{
			ID:             id,
			Hostname:       req.GetHostname(),
			Address:        req.GetAddress(),
			Slots:          capped(req.GetSlots(), 1, maxSlots),
			MemoryBytes:    capped(req.GetMemoryBytes(), 0, maxMem),
			MaxSlots:       maxSlots,
			MaxMemoryBytes: maxMem,
			Runtime:        req.GetRuntime(),
			ProviderID:     req.GetProviderId(),
			CertSerial:     issued.Serial,
			CertExpireTime: issued.Cert.NotAfter,
			Token:          tok.ID,
			KeySHA256:      key,
			State:          cloudmlv1.NodeState_NODE_STATE_READY,
			LastHeartbeat:  now,
			RegisterTime:   now,
		}
		used := *tok
		used.Used++
		used.Nodes = append(slices.Clone(tok.Nodes), id)
		// The token's use and the node in one commit: a single-use token
		// registers one node. Both are shown at once; a failed commit
		// reloads them (recover.go) and this caller gets the failure.
		b, err := store.Encode(&store.Changes{Nodes: []*store.Node{rec}, Tokens: []*store.JoinToken{&used}})
		if err != nil {
			return err
		}
		c.q.enqueue(b)
		au.mu.Lock()
		au.tokens[used.ID] = &used
		au.mu.Unlock()
		au.setNode(rec)
		c.addNode(&nodeEntry{rec: rec}, now)
		c.live.add(rec.ID, now)
		return nil
	})
	au.registerMu.Unlock()
	if werr := c.q.Wait(seq); werr != nil {
		return nil, werr
	}
	if err != nil {
		return nil, err
	}
	c.log.Info("node registered", "node_id", rec.ID, "hostname", rec.Hostname, "slots", rec.Slots, "token_id", tok.ID, "provider_id", rec.ProviderID)
	c.machines.linkSoon() // the node is durable: its machine can show it
	if req.GetSlots() > rec.Slots {
		c.log.Warn("node claimed more slots than its cap", "node_id", rec.ID, "claimed", req.GetSlots(), "cap", rec.Slots)
	}
	return &cloudmlv1.RegisterResponse{NodeId: rec.ID, Certificate: issued.CertPEM, CaCertificate: au.caPEM()}, nil
}

// orRepeat answers a Register whose token was refused with err: the same
// node again if it repeats one done (registerAgain), else err.
func (c *Coordinator) orRepeat(req *cloudmlv1.RegisterRequest, key string, err error) (*cloudmlv1.RegisterResponse, error) {
	resp, rerr := c.registerAgain(req, key)
	if resp != nil || rerr != nil {
		return resp, rerr
	}
	return nil, err
}

// registerAgain answers a Register that repeats one already done: the
// same join token and the same key as a node registered with it (the agent
// retries with the same request when the answer was lost, and the token
// may be used up by then). The node gets a new certificate for the key; a
// revoked token or a removed node gets nothing. It returns nil, nil when
// the request is no repeat.
func (c *Coordinator) registerAgain(req *cloudmlv1.RegisterRequest, key string) (*cloudmlv1.RegisterResponse, error) {
	tok, err := c.tokenRecord(req.GetJoinToken())
	if err != nil || len(tok.Nodes) == 0 {
		return nil, nil // the normal path says what is wrong
	}
	au := c.trust
	au.registerMu.Lock()
	var (
		node   string
		issued *pki.Issued
	)
	seq, err := c.lockedSeq(func() error {
		if tok.Revoked {
			return nil
		}
		for _, id := range tok.Nodes {
			n := c.nodes[id]
			if n == nil || n.rec.Removed || n.rec.KeySHA256 != key {
				continue
			}
			var err error
			issued, err = c.reissueLocked(n, req.GetCsr(), "register")
			node = id
			return err
		}
		return nil
	})
	au.registerMu.Unlock()
	if werr := c.q.Wait(seq); werr != nil {
		return nil, werr
	}
	if err != nil || issued == nil {
		return nil, err
	}
	c.log.Info("node registered again: the same token and key as before (a retried Register)", "node_id", node, "token_id", tok.ID)
	return &cloudmlv1.RegisterResponse{NodeId: node, Certificate: issued.CertPEM, CaCertificate: au.caPEM()}, nil
}

// RenewCertificate issues the calling node its next certificate.
func (s *agentServer) RenewCertificate(ctx context.Context, req *cloudmlv1.RenewCertificateRequest) (*cloudmlv1.RenewCertificateResponse, error) {
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	cert, err := s.c.renewNodeCert(id, req.GetCsr())
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.RenewCertificateResponse{Certificate: cert}, nil
}

// renewNodeCert signs a node's next certificate and makes it current; the
// previous one stays valid until it expires, so calls in flight on the old
// connection finish.
func (c *Coordinator) renewNodeCert(id string, csr []byte) ([]byte, error) {
	au := c.trust
	au.registerMu.Lock()
	defer au.registerMu.Unlock()
	var certPEM []byte
	err := c.locked(func() error {
		n := c.nodes[id]
		if n == nil || n.rec.Removed {
			return errorf(ErrUnauthenticated, "node %s is unknown or removed", id)
		}
		issued, err := c.reissueLocked(n, csr, "renew")
		if err != nil {
			return err
		}
		certPEM = issued.CertPEM
		c.log.Info("node certificate renewed", "node_id", id, "expires", n.rec.CertExpireTime)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return certPEM, nil
}

// reissueLocked signs the node's next certificate for csr and makes it
// current; the previous one stays valid until it expires, so calls in
// flight on it finish. The change is queued for commit. Callers hold
// registerMu and c.mu.
func (c *Coordinator) reissueLocked(n *nodeEntry, csr []byte, op string) (*pki.Issued, error) {
	issued, err := c.trust.ca.SignCSR(csr, pki.RoleNode, n.rec.ID, c.cfg.NodeCertTTL)
	if err != nil {
		return nil, errorf(ErrInvalid, "%s: %v", op, err)
	}
	n.rec.PrevCertSerial, n.rec.CertSerial, n.rec.CertExpireTime = n.rec.CertSerial, issued.Serial, issued.Cert.NotAfter
	ch := newChanges()
	ch.node(n.rec)
	if err := c.commit(ch); err != nil {
		return nil, err
	}
	c.trust.setNode(n.rec)
	return issued, nil
}

// nextNodeID is "node-N", one past the highest N in use. Callers hold c.mu.
func (c *Coordinator) nextNodeID() string {
	return "node-" + strconv.Itoa(c.topNode+1)
}

// Session streams commands to the calling node until it goes away, a newer
// session replaces it, or the coordinator stops. Its sends take no
// coordinator lock: the dispatcher sends each command once its commit is
// durable.
func (s *agentServer) Session(req *cloudmlv1.SessionRequest, stream cloudmlv1.AgentService_SessionServer) error {
	c := s.c
	id, err := nodeIDFrom(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	sess, err := c.openSession(id, req)
	if err != nil {
		return toStatus(err)
	}
	defer c.disp.Close(sess)
	log := c.log.With("node_id", id)
	log.Info("session opened", "running", len(req.GetRunning()))
	err = sess.Serve(stream.Context(), stream.Send)
	switch {
	case err == nil:
		log.Info("session closed by agent")
	case errors.Is(err, dispatch.ErrEnded), errors.Is(err, dispatch.ErrStopped):
		log.Info("session ended", "reason", err)
	case errors.Is(err, ErrStoreUnavailable), errors.Is(err, ErrShuttingDown):
		log.Warn("session ended: its commands were not saved", "error", err)
	default:
		log.Info("session send failed", "error", err)
		return err
	}
	return toStatus(err)
}

// openSession binds a new session to the node, replacing an older one,
// resends the node's assigned attempts and treats attempts the agent no
// longer runs as lost.
func (c *Coordinator) openSession(id string, req *cloudmlv1.SessionRequest) (*dispatch.Session, error) {
	now := time.Now()
	var sess *dispatch.Session
	err := c.locked(func() error {
		var err error
		sess, err = c.openSessionLocked(id, req, now)
		return err
	})
	if err != nil {
		if sess != nil {
			c.disp.Close(sess)
		}
		return nil, err
	}
	c.poke()
	return sess, nil
}

// openSessionLocked is openSession's work under c.mu.
func (c *Coordinator) openSessionLocked(id string, req *cloudmlv1.SessionRequest, now time.Time) (*dispatch.Session, error) {
	if c.stopping {
		return nil, ErrShuttingDown
	}
	n := c.nodes[id]
	if n == nil || n.rec.Removed {
		return nil, errorf(ErrUnauthenticated, "unknown or removed node %s", id)
	}
	sess := c.disp.Open(id)
	c.live.touch(id, now)
	ch := newChanges()
	if req.GetSlots() > 0 {
		n.rec.Slots = capped(req.GetSlots(), 1, n.maxSlots(c.cfg))
	}
	if req.GetMemoryBytes() > 0 {
		n.rec.MemoryBytes = capped(req.GetMemoryBytes(), 0, n.maxMemory(c.cfg))
	}
	if req.GetRuntime() != "" {
		n.rec.Runtime = req.GetRuntime()
	}
	n.rec.State = cloudmlv1.NodeState_NODE_STATE_READY
	n.rec.LastHeartbeat = now
	ch.node(n.rec)
	c.send(id, startedMsg(id, &cloudmlv1.SessionStarted{HeartbeatPeriod: durationpb.New(c.cfg.HeartbeatPeriod), ReportLogs: true,
		HeartbeatPort: c.pulsePort.Load()}))

	running := map[attemptRef]bool{}
	for _, r := range req.GetRunning() {
		running[refFromProto(r)] = true
	}
	var resend []attemptRef
	c.eachActive(func(j *jobEntry, a *store.Attempt) {
		if a.Swarm && a.NodeID == "" && a.Manager == id && a.State == cloudmlv1.TaskState_TASK_STATE_ASSIGNED && !j.rec.Cancelled {
			c.send(id, c.swarmAssignmentMsg(j, refOf(a))) // creating a service twice is a no-op
			return
		}
		if a.NodeID != id {
			return
		}
		r := refOf(a)
		switch {
		case j.rec.Cancelled && running[r]:
			c.send(id, cancelMsg(r, "job cancelled"))
		case j.rec.Cancelled:
			c.cancelAttempt(ch, j, a, now)
		case a.State == cloudmlv1.TaskState_TASK_STATE_ASSIGNED:
			resend = append(resend, r)
			c.send(id, assignmentMsg(j, r))
		case !running[r] && !a.Swarm: // a container outlives its agent; runtime health covers it
			c.loseAttempt(ch, j, a, fmt.Sprintf("the agent on %s restarted during attempt %d", id, a.Attempt), now)
		}
		delete(running, r)
	})
	for r := range running {
		if j := c.jobs[r.job]; j != nil {
			if a := j.attempt(r.task, r.attempt); a != nil && c.claimable(a, id) && a.Active() {
				continue
			}
		}
		c.send(id, cancelMsg(r, "the coordinator no longer wants this attempt"))
	}
	if err := c.commit(ch); err != nil {
		return sess, err
	}
	if len(resend) > 0 {
		c.log.Info("assignments resent", "node_id", id, "count", len(resend))
	}
	c.swarmSessionOpened(id)
	return sess, nil
}

// Heartbeat records that the node is alive. It takes no lock job state
// uses and writes nothing durable (liveness.go).
func (s *agentServer) Heartbeat(ctx context.Context, req *cloudmlv1.HeartbeatRequest) (*cloudmlv1.HeartbeatResponse, error) {
	c := s.c
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if !c.live.beat(id, time.Now(), req.GetRuntimeError()) {
		return nil, toStatus(errorf(ErrUnauthenticated, "unknown node %s; register again", id))
	}
	return &cloudmlv1.HeartbeatResponse{Period: durationpb.New(c.cfg.HeartbeatPeriod)}, nil
}
