package cli

import (
	"context"
	"fmt"
	"strconv"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func (a *App) list(ctx context.Context, args []string) error {
	fs := a.newFlags("list", "cloudml-client list: jobs, newest first")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := a.connect(); err != nil {
		return err
	}
	cctx, cancel := unary(ctx)
	defer cancel()
	resp, err := a.jobs.ListJobs(cctx, &cloudmlv1.ListJobsRequest{})
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	if a.json() {
		return a.printJSON(resp)
	}
	w := a.table()
	row(w, "JOB", "STATE", "TASKS", "PROGRESS", "AGE")
	for _, j := range resp.Jobs {
		row(w, j.Id, jobState(j.State), strconv.Itoa(int(j.TaskCount)),
			kv(j.TaskStates, func(n int32) string { return strconv.Itoa(int(n)) }), since(j.CreateTime))
	}
	return w.Flush()
}

func (a *App) getJob(ctx context.Context, id string) (*cloudmlv1.Job, error) {
	if err := a.connect(); err != nil {
		return nil, err
	}
	cctx, cancel := unary(ctx)
	defer cancel()
	resp, err := a.jobs.GetJob(cctx, &cloudmlv1.GetJobRequest{JobId: id})
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return resp.Job, nil
}

func (a *App) status(ctx context.Context, args []string) error {
	fs := a.newFlags("status", "cloudml-client status JOB: the job and every task (state, node, attempt, exit code, and why a task is pending or failed)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := oneJobArg("status", pos)
	if err != nil {
		return err
	}
	job, err := a.getJob(ctx, id)
	if err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(job)
	}
	fmt.Fprintf(a.Stdout, "job %s: %s, %d tasks (%s), output %s\n\n", job.Id, jobState(job.State), job.TaskCount,
		kv(job.TaskStates, func(n int32) string { return strconv.Itoa(int(n)) }), job.Output)
	w := a.table()
	row(w, "TASK", "STATE", "NODE", "ATTEMPT", "EXIT", "TIME", "PARAMS", "REASON")
	for _, t := range job.Tasks {
		exit := "-"
		if isEnded(t.State) {
			exit = strconv.Itoa(int(t.ExitCode))
		}
		row(w, strconv.Itoa(int(t.Index)), taskState(t.State), orDash(t.NodeId), strconv.Itoa(int(t.Attempt)),
			exit, duration(t.StartTime, t.EndTime), kv(t.Params, str), orDash(t.Reason))
	}
	return w.Flush()
}

func isEnded(s cloudmlv1.TaskState) bool {
	return s == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || s == cloudmlv1.TaskState_TASK_STATE_FAILED ||
		s == cloudmlv1.TaskState_TASK_STATE_CANCELLED
}

func (a *App) cancel(ctx context.Context, args []string) error {
	fs := a.newFlags("cancel", "cloudml-client cancel JOB: stop running tasks and drop pending ones")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := oneJobArg("cancel", pos)
	if err != nil {
		return err
	}
	if err := a.connect(); err != nil {
		return err
	}
	cctx, cancel := unary(ctx)
	defer cancel()
	resp, err := a.jobs.CancelJob(cctx, &cloudmlv1.CancelJobRequest{JobId: id})
	if err != nil {
		return fmt.Errorf("cancel job %s: %w", id, err)
	}
	if a.json() {
		return a.printJSON(resp.Job)
	}
	fmt.Fprintf(a.Stdout, "job %s: %s\n", resp.Job.Id, jobState(resp.Job.State))
	return nil
}

func (a *App) delete(ctx context.Context, args []string) error {
	fs := a.newFlags("delete", "cloudml-client delete JOB...: forget ended jobs: their records and the logs the coordinator "+
		"keeps. Results in the output bucket stay. A job still running must be cancelled first.")
	ids, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("delete needs at least one job id: %w", errUsage)
	}
	if err := a.connect(); err != nil {
		return err
	}
	return eachArg(ctx, a, ids, "deleted", func(ctx context.Context, id string) (*cloudmlv1.DeleteJobResponse, error) {
		resp, err := a.jobs.DeleteJob(ctx, &cloudmlv1.DeleteJobRequest{JobId: id})
		if err != nil {
			return nil, fmt.Errorf("delete job %s: %w", id, err)
		}
		return resp, nil
	}, func(id string, resp *cloudmlv1.DeleteJobResponse) {
		fmt.Fprintf(a.Stdout, "deleted job %s (%s); %.1f MiB of logs freed\n", id, jobState(resp.Job.State), mib(resp.LogBytesFreed))
	})
}

func (a *App) cluster(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "nodes" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(a.Stderr, "cloudml-client cluster nodes: list nodes with state, swarm role, address, slots, memory, running tasks and why a node is down")
			return nil
		}
		return fmt.Errorf("cluster needs a subcommand: 'cluster nodes': %w", errUsage)
	}
	fs := a.newFlags("cluster nodes", "cloudml-client cluster nodes: nodes with state, address, slots, memory and running tasks")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	if err := a.connect(); err != nil {
		return err
	}
	cctx, cancel := unary(ctx)
	defer cancel()
	resp, err := a.nodes.ListNodes(cctx, &cloudmlv1.ListNodesRequest{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	if a.json() {
		return a.printJSON(resp)
	}
	w := a.table()
	row(w, "NODE", "HOSTNAME", "STATE", "SWARM", "ADDRESS", "RUNTIME", "SLOTS", "MEMORY", "RUNNING", "LAST SEEN", "MESSAGE")
	for _, n := range resp.Nodes {
		row(w, n.Id, n.Hostname, nodeState(n.State), orDash(n.SwarmRole), n.Address, n.Runtime, strconv.Itoa(int(n.Slots)),
			fmt.Sprintf("%.1f GiB", float64(n.MemoryBytes)/(1<<30)), strconv.Itoa(int(n.RunningTasks)), since(n.LastHeartbeat), orDash(n.Message))
	}
	return w.Flush()
}
