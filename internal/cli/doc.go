// Package cli is cloudml-client: the user's commands (submit, list, status,
// logs, cancel, delete, results, cluster nodes, image ls|rm, completion) on
// cobra, over the client package. Flags go anywhere on the line; the global
// ones (--coordinator, -o/--output) work on every command. Output is a
// table by default, with extra columns for -o wide, or JSON for -o json;
// status and list redraw in place with --watch on a terminal; transfers and
// each node's staging show as progress bars when stderr is a terminal. Exit
// codes are for scripts: see ExitOK and friends.
package cli
