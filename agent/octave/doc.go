// Package octave makes Octave scripts that draw figures run headless on a
// CloudML node, in a task container as in the process runtime, and keeps
// what they drew.
//
// The agent writes a site startup file (InitFile) next to a task and points
// Octave at it through the environment (Env). The file first runs the site
// startup file it stands in for, so Debian's settings and the user's own
// ~/.octaverc still apply; then it selects the gnuplot toolkit when gnuplot
// is installed, makes figures invisible, and saves every figure still open
// when Octave exits (normal end, error or exit(N)) as
// $CLOUDML_OUTPUT_DIR/figure-<n>.png. It never changes the exit status.
//
// Octave closes all figures before it runs atexit functions, so the saving
// is done by the figures' default CloseRequestFcn, which prints a figure
// only when no user code is on the call stack, that is when the close comes
// from Octave's shutdown rather than from the script.
package octave
