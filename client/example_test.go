package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Example lists the nodes of a coordinator, submits a sweep of two tasks
// whose code is a local directory (packed and uploaded by digest), follows
// its logs to the end and reads its results. The coordinator and its one
// agent run in this process; against a real one, set cfg.Address and drop
// the dial options.
func Example() {
	dir, _ := os.MkdirTemp("", "cloudml-example-")
	defer os.RemoveAll(dir)
	demo, err := inproc.Start(inproc.Config{Dir: dir, Nodes: 1, Hostnames: []string{"gpu-box"}})
	if err != nil {
		log.Fatal(err)
	}
	defer demo.Close()

	cfg := client.DefaultConfig()
	cfg.Address, cfg.DialOptions = inproc.Target, demo.DialOptions()
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	nodes, err := c.Nodes(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range nodes {
		fmt.Printf("%s (%s): %s\n", n.GetId(), n.GetHostname(), n.GetState())
	}

	code := filepath.Join(dir, "code")
	os.MkdirAll(code, 0o755)
	os.WriteFile(filepath.Join(code, "train.sh"),
		[]byte(`echo "lr=$CLOUDML_PARAM_LR"; echo "{\"loss\": $CLOUDML_PARAM_LR}" > "$CLOUDML_OUTPUT_DIR/metrics.json"`), 0o644)
	spec := &cloudmlv1.JobSpec{
		Name:    "hello",
		Code:    &cloudmlv1.Source{Url: code},
		Command: []string{"sh", "train.sh"},
		Sweep:   &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"lr": {Values: []string{"0.3", "0.1"}}}},
	}
	sub, err := c.Submit(ctx, spec, client.SubmitOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("submitted %d tasks; code uploaded: %v\n", sub.Job.GetTaskCount(), strings.HasPrefix(sub.Uploads[0].URL, "file://"))

	var lines []string
	final, err := c.Logs(ctx, sub.Job.GetId(), client.LogOptions{Follow: true}, func(m *cloudmlv1.SubscribeLogsResponse) error {
		lines = append(lines, fmt.Sprintf("[%d] %s", m.GetTaskIndex(), strings.TrimSpace(string(m.GetData()))))
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	sort.Strings(lines) // tasks run side by side
	fmt.Println(strings.Join(lines, "\n"))
	fmt.Println(final)

	res, err := c.Results(ctx, sub.Job.GetId())
	if err != nil {
		log.Fatal(err)
	}
	best := res.GetRows()[0]
	fmt.Printf("best: task %d, lr=%s, loss=%g\n", best.GetTaskIndex(), best.GetParams()["lr"], best.GetMetrics()["loss"])
	// Output:
	// node-1 (gpu-box): NODE_STATE_READY
	// submitted 2 tasks; code uploaded: true
	// [0] lr=0.3
	// [1] lr=0.1
	// JOB_STATE_SUCCEEDED
	// best: task 1, lr=0.1, loss=0.1
}
