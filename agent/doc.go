// Package agent is cloudml-agent, the node side of the CloudML mesh. It
// dials the coordinator (never the other way round) over TLS 1.3, registers
// once with a join token that pins the coordinator's CA and keeps the node
// certificate it gets in its secrets directory (identity.go; renewed at
// half-life), then holds a Session stream open: assignments and cancels come
// down it, and the agent answers with ReportTask, PublishLogs and Heartbeat
// calls. Each attempt runs in its own goroutine (package agent/attempt),
// stages code and data through a content-addressed cache (agent/stage),
// runs through a Runtime (agent/runtime) and ships its logs with sequence
// numbers (agent/logship). The agent never imports the coordinator; the two
// meet only in proto/cloudml/v1.
//
// # What a task can see of the agent
//
// Everything secret the agent keeps on disk lives in SecretsDir
// (<work-dir>/identity, mode 0700): the node identity today, the node key
// and certificates with mutual TLS. Nothing secret goes anywhere else in the
// work dir, which is 0711 so that a task user can reach its own files.
//
// A process task gets an environment built from the job alone: the
// CLOUDML_ variables, the job's env and params, HOME and TMPDIR of its own
// attempt (attempts/<job>/<task>/<n>/home and tmp), USER and LOGNAME of the
// task user, OCTAVE_SITE_INITFILE, and from the agent's own environment only
// runtime.HostEnvNames and runtime.HostEnvPrefixes (PATH, LANG, LANGUAGE,
// TZ, LC_*). CLOUDML_TOKEN, cloud credentials and proxies never reach it.
//
// When the agent runs as root, tasks run as Config.TaskUser (--task-user,
// default nobody; never root) with no supplementary groups, in a private
// mount namespace that covers SecretsDir with an empty tmpfs; the task owns
// only its run, output, home and tmp directories. When the agent is not
// root, tasks run as its user, confined by Landlock (Linux 5.13+; the agent
// refuses to start without it) so that SecretsDir cannot be opened, the rest
// of the work dir is read-only to them, and the agent's /proc entries
// (environ, mem, fd) and, from Linux 6.12, signals are out of reach. See
// runtime.ProcessConfig for the mechanisms and their limits; the main ones:
// a task reads whatever its user may read elsewhere on the machine, every
// process can read the agent's command line (never put a secret in argv),
// tasks of one node share the task user, and a non-root agent in the docker
// group hands its tasks the Docker socket.
//
// The agent reads a task's outputs and metrics.json through an os.Root of
// the output directory, so a symlink a task leaves there cannot make the
// agent upload a file the task could not read itself.
//
// A container task gets only its service spec's environment and mounts:
// the staged code and data and the Octave dir read-only, and its output
// volume (agent/container).
package agent
