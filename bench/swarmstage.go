package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudml/cloudml/internal/netns"
)

// stageEvent is an agent's "job staged" report, seen in the coordinator's
// output (the agents' info log, which carries ReportStage's
// bytes_downloaded), with the time the bench received the line.
type stageEvent struct {
	node  string
	at    time.Time
	bytes int64
}

var stagedRE = regexp.MustCompile(`(agent-\d+).*job staged.*job_id="?([^\s"]+)"?.*bytes_downloaded=(\d+)`)

// stageLog collects "job staged" events per job.
type stageLog struct {
	mu     sync.Mutex
	events map[string][]stageEvent
}

func (l *stageLog) watch(at time.Time, line string) {
	m := stagedRE.FindStringSubmatch(line)
	if m == nil {
		return
	}
	n, _ := strconv.ParseInt(m[3], 10, 64)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.events == nil {
		l.events = map[string][]stageEvent{}
	}
	l.events[m[2]] = append(l.events[m[2]], stageEvent{node: m[1], at: at, bytes: n})
}

// wait returns the job's events once every node reported.
func (l *stageLog) wait(job string, nodes int, limit time.Duration) ([]stageEvent, error) {
	deadline := time.Now().Add(limit)
	for {
		l.mu.Lock()
		ev := append([]stageEvent(nil), l.events[job]...)
		l.mu.Unlock()
		if len(ev) >= nodes {
			return ev, nil
		}
		if time.Now().After(deadline) {
			return ev, fmt.Errorf("job %s: %d of %d nodes reported staging", job, len(ev), nodes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// swarmStageRows measures (c): staging an object of size bytes on every
// node (the time from submit to the last node's "job staged" report)
// against curl of the same object from the same server, from each node's
// namespace at once and from one alone; then the bytes a second job with the
// same code and data downloads.
func (s *swarmBench) swarmStageRows(ctx context.Context, runs int, size int64) ([]row, error) {
	code, err := os.MkdirTemp(s.dir, "code-")
	if err != nil {
		return nil, err
	}
	var events stageLog
	s.log.watch(events.watch)
	var cms, curlsAll, curlsOne, curlsFile []time.Duration
	var again, cacheGrowth int64
	for r := 0; r < runs; r++ {
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		if err := s.seedObject("big.bin", size, uint64(r+1)); err != nil {
			return nil, err
		}
		args := []string{"--name", "stage", "--image", netns.BusyboxImage, "--code", code,
			"--data", "big=gs://" + benchBucket + "/big.bin", "--", "true"}
		d, _, err := s.run(args...)
		if err != nil {
			return nil, err
		}
		ev, err := events.wait(d.job, s.nodes, time.Minute)
		if err != nil {
			return nil, err
		}
		var last time.Time
		for _, e := range ev {
			if e.bytes < size {
				return nil, fmt.Errorf("job %s: %s downloaded %d bytes, want at least %d", d.job, e.node, e.bytes, size)
			}
			if e.at.After(last) {
				last = e.at
			}
		}
		cms = append(cms, last.Sub(d.start))
		all, err := s.curl(size, s.nodes, false)
		if err != nil {
			return nil, err
		}
		one, err := s.curl(size, 1, false)
		if err != nil {
			return nil, err
		}
		file, err := s.curl(size, s.nodes, true)
		if err != nil {
			return nil, err
		}
		curlsAll, curlsOne, curlsFile = append(curlsAll, all), append(curlsOne, one), append(curlsFile, file)

		// The same code and data again.
		before := s.cacheBytes()
		d, _, err = s.run(args...)
		if err != nil {
			return nil, err
		}
		if ev, err = events.wait(d.job, s.nodes, time.Minute); err != nil {
			return nil, err
		}
		for _, e := range ev {
			again += e.bytes
		}
		cacheGrowth += s.cacheBytes() - before
	}
	cm, all, one, file := median(cms), median(curlsAll), median(curlsOne), median(curlsFile)
	rate := func(d time.Duration) string { return fmt.Sprintf("%.0f MiB/s", float64(size)/(1<<20)/d.Seconds()) }
	mib := size >> 20
	return []row{{
		name:     fmt.Sprintf("c) stage %d MiB on %d nodes at once, per node", mib, s.nodes),
		cloudml:  rate(cm) + fmt.Sprintf(" (%s)", cm.Round(time.Millisecond)),
		baseline: rate(file) + fmt.Sprintf(" %dx curl -o", s.nodes),
		ratio:    fmt.Sprintf("%.2f", file.Seconds()/cm.Seconds()),
		goal:     ">= 1.0",
	}, {
		name:     fmt.Sprintf("c) (%d x curl to /dev/null at once, stores nothing)", s.nodes),
		baseline: rate(all) + fmt.Sprintf(" %dx curl", s.nodes),
		ratio:    fmt.Sprintf("%.2f", all.Seconds()/cm.Seconds()),
	}, {
		name:     fmt.Sprintf("c) (one curl of the %d MiB alone, to /dev/null)", mib),
		baseline: rate(one) + " curl",
		ratio:    fmt.Sprintf("%.2f", one.Seconds()/cm.Seconds()),
	}, {
		name:     "c) second staging: bytes downloaded (all runs)",
		cloudml:  fmt.Sprint(again),
		baseline: fmt.Sprintf("cache +%d", cacheGrowth),
		goal:     "0",
	}}, nil
}

// curl downloads the object with curl from the namespaces of the first n
// nodes at once, through the bridge as the agents do, to /dev/null or (toFile)
// to a file on the disk the agents' caches are on, and returns the slowest
// one's time.
func (s *swarmBench) curl(size int64, n int, toFile bool) (time.Duration, error) {
	u := fmt.Sprintf("http://%s:%s/storage/v1/b/%s/o/big.bin?alt=media", s.hostAddr, s.gcsPort, benchBucket)
	errs := make([]error, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ns := fmt.Sprintf("/var/run/netns/%s-n%d", swarmName, i)
			dst := os.DevNull
			if toFile {
				dst = filepath.Join(s.dir, fmt.Sprintf("curl-%d.bin", i))
				defer os.Remove(dst)
			}
			start := time.Now()
			out, err := exec.Command("nsenter", "--net="+ns, "curl", "-sS", "-o", dst, "-w", "%{size_download}", u).CombinedOutput()
			took[i] = time.Since(start)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("curl from node %d: %w: %s", i, err, out)
			case strings.TrimSpace(string(out)) != strconv.FormatInt(size, 10):
				errs[i] = fmt.Errorf("curl from node %d: got %s bytes, want %d", i, out, size)
			}
		})
	}
	wg.Wait()
	var slowest time.Duration
	for i := range n {
		if errs[i] != nil {
			return 0, errs[i]
		}
		slowest = max(slowest, took[i])
	}
	return slowest, nil
}

// cacheBytes is the size of every node's staging cache.
func (s *swarmBench) cacheBytes() int64 {
	var total int64
	for i := 1; i <= s.nodes; i++ {
		filepath.WalkDir(filepath.Join(s.dir, "state", "nodes", fmt.Sprintf("node-%d", i), "cache"), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					total += info.Size()
				}
			}
			return nil
		})
	}
	return total
}
