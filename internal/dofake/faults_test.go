package dofake_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/cloudml/cloudml/internal/dofake"
)

// The droplet exists, the connection closes before any answer: a client
// that does not retry gets an error and finds the droplet by its request
// tag.
func TestLostCreateDropped(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	in := s.Inject(dofake.EndpointDropletsCreate, dofake.Fault{Drop: true, AfterEffect: true, Times: 1})
	_, _, err := c.Droplets.Create(ctx, createReq("n", "cloudml-req:r1"))
	if err == nil || status(err) != 0 {
		t.Fatalf("create with its connection dropped: %v; want a transport error", err)
	}
	found, _, err := c.Droplets.ListByTag(ctx, "cloudml-req:r1", nil)
	if err != nil || len(found) != 1 {
		t.Fatalf("list by the request tag after a lost create: %d droplets, %v; want 1", len(found), err)
	}
	if st := s.Stats(); in.Fired() != 1 || st.Faults[dofake.EndpointDropletsCreate] != 1 || st.Created != 1 {
		t.Errorf("fired %d, stats %+v", in.Fired(), st)
	}
	if _, _, err := c.Droplets.Create(ctx, createReq("n", "cloudml-req:r2")); err != nil {
		t.Errorf("create after the fault was used up: %v", err)
	}
}

// The droplet exists and the API answers 500.
func TestLostCreate500(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	s.Inject(dofake.EndpointDropletsCreate, dofake.Fault{Status: 500, AfterEffect: true, Times: 1})
	_, _, err := c.Droplets.Create(ctx, createReq("n", "cloudml-req:r1"))
	if status(err) != 500 {
		t.Fatalf("create: %v; want 500", err)
	}
	if found, _, _ := c.Droplets.ListByTag(ctx, "cloudml-req:r1", nil); len(found) != 1 {
		t.Fatalf("%d droplets by the request tag; want 1", len(found))
	}
}

// godo's retries resend a POST whose response was lost: the hazard the
// provider must guard against by listing by tag before any retry.
func TestLostCreateRetriedByGodoDuplicates(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 3)
	ctx := context.Background()
	s.Inject(dofake.EndpointDropletsCreate, dofake.Fault{Drop: true, AfterEffect: true, Times: 1})
	if _, _, err := c.Droplets.Create(ctx, createReq("n", "cloudml-req:r1")); err != nil {
		t.Fatalf("create retried by godo: %v", err)
	}
	found, _, _ := c.Droplets.ListByTag(ctx, "cloudml-req:r1", nil)
	t.Logf("one create call, its first response lost, godo retrying: %d droplets", len(found))
	if len(found) != 2 {
		t.Errorf("%d droplets; want 2 (the duplicate a blind retry makes)", len(found))
	}
}

func Test5xxRetriedByGodo(t *testing.T) {
	s := start(t, nil)
	ctx := context.Background()
	d, _, err := client(t, s, 0).Droplets.Create(ctx, createReq("n"))
	if err != nil {
		t.Fatal(err)
	}
	in := s.Inject(dofake.EndpointDropletsGet, dofake.Fault{Status: 503, Times: 2})
	if _, _, err := client(t, s, 3).Droplets.Get(ctx, d.ID); err != nil {
		t.Fatalf("get with two 503s and three retries: %v", err)
	}
	if st := s.Stats(); in.Fired() != 2 || st.Requests[dofake.EndpointDropletsGet] != 3 {
		t.Errorf("fired %d, %d get requests; want 2, 3", in.Fired(), st.Requests[dofake.EndpointDropletsGet])
	}
	s.Inject(dofake.EndpointDropletsGet, dofake.Fault{Status: 502, Message: "upstream gone", Times: 1})
	_, _, err = client(t, s, 0).Droplets.Get(ctx, d.ID)
	var er *godo.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != 502 || er.Message != "upstream gone" || er.RequestID == "" {
		t.Errorf("get with a 502 and no retries: %v", err)
	}
}

// A 429 carries Retry-After and exhausted rate headers, and godo's retry
// waits as long as it says (its own backoff here is 1 to 10 ms).
func Test429RetryAfterHonoured(t *testing.T) {
	s := start(t, nil)
	ctx := context.Background()
	s.Inject(dofake.EndpointSizesList, dofake.Fault{Status: 429, RetryAfter: 0, Times: 1})
	_, resp, err := client(t, s, 0).Sizes.List(ctx, nil)
	var er *godo.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != 429 || resp.Rate.Remaining != 0 || resp.Rate.Limit != 5000 {
		t.Fatalf("429: %v, rate %+v", err, resp.Rate)
	}
	if got := resp.Header.Get("Retry-After"); got != "0" {
		t.Errorf("Retry-After %q; want 0", got)
	}

	limited := s.Inject(dofake.EndpointSizesList, dofake.Fault{Status: 429, RetryAfter: time.Second, Times: 1})
	retry := s.Inject(dofake.EndpointSizesList, dofake.Fault{Times: 1}) // no effect: marks when the retry came
	if _, _, err := client(t, s, 3).Sizes.List(ctx, nil); err != nil {
		t.Fatalf("sizes after one 429 with three retries: %v", err)
	}
	if limited.Fired() != 1 || retry.Fired() != 1 {
		t.Fatalf("fired %d and %d; want 1 and 1", limited.Fired(), retry.Fired())
	}
	gap := retry.FiredAt()[0].Sub(limited.FiredAt()[0])
	t.Logf("godo retried %v after a 429 with Retry-After: 1", gap)
	if gap < time.Second {
		t.Errorf("godo retried after %v, before the 1 s Retry-After", gap)
	}
}

func TestRateLimitEnforced(t *testing.T) {
	s := start(t, func(c *dofake.Config) { c.RateLimit, c.EnforceRateLimit = 3, true })
	c := client(t, s, 0)
	ctx := context.Background()
	for i := range 3 {
		_, resp, err := c.Account.Get(ctx)
		if err != nil || resp.Rate.Limit != 3 || resp.Rate.Remaining != 2-i || resp.Rate.Reset.IsZero() {
			t.Fatalf("request %d: %v, rate %+v", i, err, resp.Rate)
		}
	}
	_, resp, err := c.Account.Get(ctx)
	retryAfter, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if status(err) != 429 || retryAfter < 3500 || retryAfter > 3600 {
		t.Errorf("4th request of 3 per hour: %v, Retry-After %d s", err, retryAfter)
	}
}

func TestDeleteFaults(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	d, _, err := c.Droplets.Create(ctx, createReq("n"))
	if err != nil {
		t.Fatal(err)
	}

	s.Inject(dofake.EndpointDropletsDelete, dofake.Fault{Status: 500, Times: 1})
	if _, err := c.Droplets.Delete(ctx, d.ID); status(err) != 500 {
		t.Fatalf("failing delete: %v; want 500", err)
	}
	if _, _, err := c.Droplets.Get(ctx, d.ID); err != nil {
		t.Fatalf("droplet after a failed delete: %v; want it still there", err)
	}

	s.Inject(dofake.EndpointDropletsDelete, dofake.Fault{Delay: time.Hour, Times: 1})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = c.Droplets.Delete(short, d.ID)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow delete with a 50 ms deadline: %v; want the deadline", err)
	}
	if _, _, err := c.Droplets.Get(ctx, d.ID); err != nil {
		t.Fatalf("droplet after an abandoned slow delete: %v; want it still there", err)
	}

	s.Inject(dofake.EndpointDropletsDelete, dofake.Fault{Status: 503, AfterEffect: true, Times: 1})
	if _, err := c.Droplets.Delete(ctx, d.ID); status(err) != 503 {
		t.Fatalf("delete whose answer is lost: %v; want 503", err)
	}
	if _, _, err := c.Droplets.Get(ctx, d.ID); status(err) != 404 {
		t.Errorf("droplet after a delete that took effect: %v; want 404", err)
	}

	s.Inject(dofake.EndpointDropletsDeleteByTag, dofake.Fault{Status: 500})
	for range 2 {
		if _, err := c.Droplets.DeleteByTag(ctx, "any"); status(err) != 500 {
			t.Errorf("delete by tag failing until cleared: %v; want 500", err)
		}
	}
	s.ClearFaults(dofake.EndpointDropletsDeleteByTag)
	if _, err := c.Droplets.DeleteByTag(ctx, "any"); err != nil {
		t.Errorf("delete by tag after ClearFaults: %v", err)
	}
}

func TestFaultSkipAndOrder(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	s.Inject(dofake.EndpointAccountGet, dofake.Fault{Skip: 1, Status: 500, Times: 1})
	s.Inject(dofake.EndpointAccountGet, dofake.Fault{Status: 502, Times: 1})
	var got []int
	for range 4 {
		_, _, err := c.Account.Get(ctx)
		got = append(got, status(err))
	}
	if want := []int{0, 500, 502, 0}; !slices.Equal(got, want) {
		t.Errorf("statuses %v; want %v", got, want)
	}
	s.ClearFaults()
	if st := s.Stats(); st.Faults[dofake.EndpointAccountGet] != 2 || st.Requests[dofake.EndpointAccountGet] != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestAuthAndErrorBody(t *testing.T) {
	s := start(t, nil)
	for _, token := range []string{"", "wrong"} {
		resp, body := raw(t, "GET", s.URL()+"v2/account", token, "")
		var e map[string]string
		if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != 401 {
			t.Fatalf("token %q: %d %s", token, resp.StatusCode, body)
		}
		if e["id"] != "Unauthorized" || e["message"] == "" || e["request_id"] != resp.Header.Get("X-Request-Id") || len(e) != 3 {
			t.Errorf("401 body %v, request id header %q", e, resp.Header.Get("X-Request-Id"))
		}
	}
	resp, body := raw(t, "GET", s.URL()+"v2/nothing-here", s.Token(), "")
	if resp.StatusCode != 404 || !json.Valid([]byte(body)) {
		t.Errorf("unknown path: %d %s", resp.StatusCode, body)
	}
	resp, body = raw(t, "POST", s.URL()+"v2/droplets", s.Token(), "{not json")
	if resp.StatusCode != 400 {
		t.Errorf("malformed body: %d %s", resp.StatusCode, body)
	}
	resp, _ = raw(t, "GET", s.URL()+"v2/droplets?tag_name=a&name=b", s.Token(), "")
	if resp.StatusCode != 400 {
		t.Errorf("tag_name with name: %d; want 400", resp.StatusCode)
	}
	if st := s.Stats(); st.Unauthorized != 2 || st.Requests[dofake.EndpointUnknown] != 1 {
		t.Errorf("stats %+v", st)
	}
}
