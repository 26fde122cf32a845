package cli

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/cloudml/cloudml/client"
)

// bars draws the client's transfers as progress bars, one per transfer
// (uploads, the image push, each node's staging, downloads), on a
// terminal. Made by progress; wait ends them.
type bars struct {
	p *mpb.Progress
}

// progress returns bars on stderr when it is a terminal, else nil (no
// progress is shown), and the function that waits for the bars to finish
// drawing; call it before printing anything else to stderr.
func (a *App) progress() (client.Progress, func()) {
	if !isTerminal(a.Stderr) {
		return nil, func() {}
	}
	b := &bars{p: mpb.New(mpb.WithOutput(a.Stderr), mpb.WithWidth(32))}
	return b, b.p.Wait
}

// Start adds a bar for t.
func (b *bars) Start(t client.Transfer) client.Tracker {
	tr := &barTracker{}
	label := fmt.Sprintf("%-8s %s", verb(t.Kind), t.Name)
	if t.Kind == client.KindStage {
		label = fmt.Sprintf("%-8s %s", verb(t.Kind), nodeLabel(t.Name, t.Node))
	}
	filler := mpb.BarStyle().Lbound("[").Rbound("]")
	var style mpb.BarFillerBuilder = filler
	if t.Total <= 0 {
		style = mpb.SpinnerStyle()
	}
	// Made with total 0 and given its total after, the bar ends only in
	// Done: made with its total, it completed by itself when the bytes
	// reached it and its last frame could show "100%" instead of how the
	// transfer ended.
	tr.bar = b.p.New(0, style,
		mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(tr.status, decor.WCSyncSpace)),
		mpb.BarFillerClearOnComplete(),
	)
	if t.Total > 0 {
		tr.bar.SetTotal(t.Total, false)
	}
	tr.known = t.Total > 0
	tr.kind = t.Kind
	return tr
}

func verb(k client.Kind) string {
	switch k {
	case client.KindUpload:
		return "upload"
	case client.KindImagePush:
		return "push"
	case client.KindStage:
		return "stage"
	case client.KindDownload:
		return "download"
	}
	return "transfer"
}

// barTracker moves one bar.
type barTracker struct {
	bar   *mpb.Bar
	kind  client.Kind
	known bool // the bar has a total
	once  sync.Once
	end   atomic.Pointer[string] // the message shown once done
}

// status is the bar's right-hand text: sizes and percentage, then how it ended.
func (t *barTracker) status(s decor.Statistics) string {
	if msg := t.end.Load(); msg != nil {
		return *msg
	}
	if s.Total <= 0 || !t.known {
		return fmt.Sprintf("%.1f MiB", mib(s.Current))
	}
	return fmt.Sprintf("%.1f / %.1f MiB %3d%%", mib(s.Current), mib(s.Total), s.Current*100/max(s.Total, 1))
}

// Update moves the bar.
func (t *barTracker) Update(current, total int64) {
	if total > 0 && t.known {
		t.bar.SetTotal(total, false)
	}
	t.bar.SetCurrent(current)
}

// Done completes the bar, or aborts it with the error.
func (t *barTracker) Done(err error) {
	t.once.Do(func() {
		cur := t.bar.Current()
		msg := fmt.Sprintf("%.1f MiB, %s", mib(cur), doneWord(t.kind))
		if err != nil {
			msg = "failed: " + err.Error()
			t.end.Store(&msg)
			t.bar.Abort(false)
			return
		}
		t.end.Store(&msg)
		t.bar.SetTotal(-1, true)
	})
}

func doneWord(k client.Kind) string {
	switch k {
	case client.KindUpload:
		return "uploaded"
	case client.KindImagePush:
		return "pushed"
	case client.KindStage:
		return "staged"
	}
	return "done"
}
