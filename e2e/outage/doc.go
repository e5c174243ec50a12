// Package outage is the end-to-end suite of dead dependencies (issue 6): the control plane's own
// PostgreSQL and Redis are stopped and started again under a running stack, to check that
// requests fail fast with 503 and a clear code meanwhile and that everything works again
// afterwards without restarting any product process.
package outage
