package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/cloudml/cloudml/client"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const watchHelp = `With --watch (-w) the output is redrawn in place every second on a
terminal; when stdout is not a terminal, a new snapshot is printed each time
something in it changed, separated by a blank line.`

func (a *App) listCmd() *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Long: "List shows every job the coordinator keeps, newest first: its state, tasks\n" +
			"and how many are in each state. -o wide adds how long it ran, the image,\n" +
			"the command and the output bucket.\n\n" +
			watchHelp + "\nA watched list runs until interrupted (Ctrl-C, exit 0).",
		Example: `  cloudml-client list
  cloudml-client list -o wide --watch
  cloudml-client list -o json`,
		Aliases: []string{"ls"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			read := func(ctx context.Context) (snapshot, error) {
				jobs, err := c.Jobs(ctx)
				if err != nil {
					return snapshot{}, err
				}
				resp := &cloudmlv1.ListJobsResponse{Jobs: jobs}
				text, err := a.renderJobs(resp)
				return snapshot{text: text, key: keyOf(resp)}, err
			}
			if watch {
				return a.watch(cmd.Context(), read)
			}
			s, err := read(cmd.Context())
			if err != nil {
				return err
			}
			_, err = a.Stdout.Write(s.text)
			return err
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw the list every second until interrupted")
	return cmd
}

// jobDuration is how long a job has been, or was, around.
func jobDuration(j *cloudmlv1.Job) string {
	if j.GetCreateTime() == nil {
		return "-"
	}
	end := time.Now()
	if j.GetEndTime() != nil {
		end = j.GetEndTime().AsTime()
	}
	return human(end.Sub(j.GetCreateTime().AsTime()))
}

// noArgs refuses arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q", cmd.Name(), args[0])
	}
	return nil
}

// keyOf is a message's deterministic encoding, to tell snapshots apart.
func keyOf(m proto.Message) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return b
}

func (a *App) renderJobs(resp *cloudmlv1.ListJobsResponse) ([]byte, error) {
	if a.json() {
		return marshalJSON(resp)
	}
	return render(func(w io.Writer) error {
		t := newTable(w)
		head := []string{"JOB", "STATE", "TASKS", "PROGRESS", "AGE"}
		if a.wide() {
			head = append(head, "DURATION", "IMAGE", "COMMAND", "OUTPUT")
		}
		t.row(head...)
		for _, j := range resp.GetJobs() {
			cells := []string{j.GetId(), jobState(j.GetState()), count(j.GetTaskCount()), kv(j.GetTaskStates(), count), since(j.GetCreateTime())}
			if a.wide() {
				cells = append(cells, jobDuration(j), orDash(j.GetSpec().GetImage()),
					orDash(strings.Join(j.GetSpec().GetCommand(), " ")), orDash(j.GetOutput()))
			}
			t.row(cells...)
		}
		return t.flush()
	})
}

// defaultStatusLimit is how many tasks status lists in a table unless
// --limit says otherwise: a 10,000-task sweep fits no terminal.
const defaultStatusLimit = 100

func (a *App) statusCmd() *cobra.Command {
	var watch bool
	var states []string
	limit := defaultStatusLimit
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job and its tasks: state, node, attempt, exit code, reason",
		Long: "Status shows a job, its tasks' counts by state, and its tasks: each one's state,\n" +
			"the node that runs it (id and hostname), the attempt, the exit code, how long\n" +
			"it ran, its params, and why it is pending or failed. A container job also\n" +
			"lists each node's staging while it is not done. -o wide adds the metrics and\n" +
			"results of each task, and the staging always.\n\n" +
			"The table lists the first 100 tasks (--limit; 0 lists all); --state keeps\n" +
			"only tasks in the states named (pending, assigned, staging, running,\n" +
			"succeeded, failed, cancelled). -o json holds every task unless --limit or\n" +
			"--state is given.\n\n" +
			watchHelp + "\nA watched status ends when the job ends, with exit code 0 if it\n" +
			"succeeded, 3 if it failed, 4 if it was cancelled.",
		Example: `  cloudml-client status linreg-3f9a1c
  cloudml-client status linreg-3f9a1c --state failed,running
  cloudml-client status linreg-3f9a1c --watch
  cloudml-client status linreg-3f9a1c -o json`,
		Args:              oneJob,
		ValidArgsFunction: a.completeJobs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			filter, err := taskFilter(states, limit)
			if err != nil {
				return err
			}
			if a.json() && !cmd.Flags().Changed("limit") {
				filter.Limit = 0 // scripts get every task unless they ask
			}
			var final cloudmlv1.JobState
			read := func(ctx context.Context) (snapshot, error) {
				job, more, err := c.JobTasks(ctx, args[0], filter)
				if err != nil {
					return snapshot{}, err
				}
				var names nodeNames
				if !a.json() {
					nodes, err := c.Nodes(ctx)
					if err != nil {
						return snapshot{}, err
					}
					names = namesOf(nodes)
				}
				final = job.GetState()
				text, err := a.renderStatus(job, names, filter, more)
				return snapshot{text: text, key: keyOf(job), done: jobEnded(job.GetState())}, err
			}
			if !watch {
				s, err := read(cmd.Context())
				if err != nil {
					return err
				}
				_, err = a.Stdout.Write(s.text)
				return err
			}
			if err := a.watch(cmd.Context(), read); err != nil || !jobEnded(final) {
				return err
			}
			return exitFor(final)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw every second until the job ends; exit as logs -f does")
	cmd.Flags().StringSliceVar(&states, "state", nil, "list only tasks in these states (comma-separated: pending, assigned, staging, running, succeeded, failed, cancelled)")
	cmd.Flags().IntVar(&limit, "limit", defaultStatusLimit, "list at most this many tasks (0: all)")
	return cmd
}

// taskFilter parses status's --state and --limit.
func taskFilter(states []string, limit int) (client.TaskFilter, error) {
	f := client.TaskFilter{Limit: limit}
	if limit < 0 {
		return f, usageErrorf("--limit must be 0 (all tasks) or more, got %d", limit)
	}
	var names []string
	for _, name := range states {
		v, ok := cloudmlv1.TaskState_value["TASK_STATE_"+strings.ToUpper(strings.TrimSpace(name))]
		if !ok || v == 0 {
			for st := range cloudmlv1.TaskState_name {
				if st != 0 {
					names = append(names, taskState(cloudmlv1.TaskState(st)))
				}
			}
			slices.Sort(names)
			return f, usageErrorf("--state %q is not a task state; use one of %s", name, strings.Join(names, ", "))
		}
		f.States = append(f.States, cloudmlv1.TaskState(v))
	}
	return f, nil
}

// exitFor is the exit of a followed job that ended in state s.
func exitFor(s cloudmlv1.JobState) error {
	switch s {
	case cloudmlv1.JobState_JOB_STATE_FAILED:
		return exitError{ExitJobFailed}
	case cloudmlv1.JobState_JOB_STATE_CANCELLED:
		return exitError{ExitJobCancelled}
	}
	return nil
}

// renderStatus renders a job with the tasks filter selected; more says
// the limit left some out.
func (a *App) renderStatus(job *cloudmlv1.Job, names nodeNames, filter client.TaskFilter, more bool) ([]byte, error) {
	if a.json() {
		return marshalJSON(job)
	}
	return render(func(w io.Writer) error {
		fmt.Fprintf(w, "job %s: %s, %s (%s), output %s\n\n", job.GetId(), jobState(job.GetState()),
			plural(int(job.GetTaskCount()), "task"), kv(job.GetTaskStates(), count), job.GetOutput())
		if stages := job.GetStages(); len(stages) > 0 && (a.wide() || !allStaged(stages)) {
			t := newTable(w)
			t.row("STAGING ON", "STATE", "DOWNLOADED", "ERROR")
			for _, s := range stages {
				t.row(names.name(s.GetNodeId()), stageState(s.GetState()), fmt.Sprintf("%.1f MiB", mib(s.GetBytesDownloaded())), orDash(s.GetError()))
			}
			if err := t.flush(); err != nil {
				return err
			}
			fmt.Fprintln(w)
		}
		t := newTable(w)
		head := []string{"TASK", "STATE", "NODE", "ATTEMPT", "EXIT", "TIME", "PARAMS", "REASON"}
		if a.wide() {
			head = append(head, "METRICS", "RESULTS")
		}
		t.row(head...)
		for _, tk := range job.GetTasks() {
			exit := "-"
			if taskEnded(tk.GetState()) {
				exit = strconv.Itoa(int(tk.GetExitCode()))
			}
			cells := []string{strconv.Itoa(int(tk.GetIndex())), taskState(tk.GetState()), names.name(tk.GetNodeId()),
				strconv.Itoa(int(tk.GetAttempt())), exit, duration(tk.GetStartTime(), tk.GetEndTime()), kv(tk.GetParams(), str), orDash(tk.GetReason())}
			if a.wide() {
				cells = append(cells, kv(tk.GetMetrics(), num), orDash(tk.GetResultsUrl()))
			}
			t.row(cells...)
		}
		if err := t.flush(); err != nil {
			return err
		}
		if more {
			fmt.Fprintf(w, "\n(%d of %s listed: --limit 0 lists every one, --state failed only the failed ones)\n",
				len(job.GetTasks()), plural(selectedTasks(job, filter), "task"))
		}
		return nil
	})
}

// selectedTasks counts the job's tasks in filter's states, from the job's
// counts by state.
func selectedTasks(job *cloudmlv1.Job, filter client.TaskFilter) int {
	if len(filter.States) == 0 {
		return int(job.GetTaskCount())
	}
	n := 0
	for _, st := range filter.States {
		n += int(job.GetTaskStates()[taskState(st)])
	}
	return n
}

func allStaged(stages []*cloudmlv1.NodeStage) bool {
	for _, s := range stages {
		if s.GetState() != cloudmlv1.StageState_STAGE_STATE_STAGED {
			return false
		}
	}
	return true
}

func (a *App) cancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a job: stop its running tasks, drop its pending ones",
		Long: "Cancel stops a job's running attempts and drops its pending tasks. Cancelling a\n" +
			"job that already ended changes nothing and prints its state.",
		Example:           `  cloudml-client cancel linreg-3f9a1c`,
		Args:              oneJob,
		ValidArgsFunction: a.completeJobs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			job, err := c.Cancel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(job)
			}
			fmt.Fprintf(a.Stdout, "job %s: %s\n", job.GetId(), jobState(job.GetState()))
			return nil
		},
	}
}

func (a *App) deleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete JOB...",
		Short: "Forget ended jobs and their stored logs (results in the bucket stay)",
		Long: "Delete forgets ended jobs: their records and the logs the coordinator keeps.\n" +
			"Results in the output bucket stay. A job still running must be cancelled\n" +
			"first. Each job is reported on its own; the exit code is 1 if any failed.",
		Example: `  cloudml-client delete linreg-3f9a1c
  cloudml-client delete linreg-3f9a1c quick-0b12ef -o json`,
		Aliases:           []string{"rm"},
		Args:              minArgs("job id (see 'cloudml-client list')"),
		ValidArgsFunction: a.completeJobs,
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return eachArg(cmd.Context(), a, ids, "deleted", c.Delete, func(id string, resp *cloudmlv1.DeleteJobResponse) {
				fmt.Fprintf(a.Stdout, "deleted job %s (%s); %.1f MiB of logs freed\n", id, jobState(resp.GetJob().GetState()), mib(resp.GetLogBytesFreed()))
			})
		},
	}
}

// completeJobs completes JOB arguments with the coordinator's job ids.
func (a *App) completeJobs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if cmd.Name() != "delete" && len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	jobs, err := c.Jobs(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, j := range jobs {
		if strings.HasPrefix(j.GetId(), toComplete) {
			out = append(out, cobra.CompletionWithDesc(j.GetId(), jobState(j.GetState())))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
