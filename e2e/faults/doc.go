// Package faults is the end-to-end suite of crashes (issue 6): data nodes and the control plane
// killed with SIGKILL at chosen moments of an upload, restarted, and checked on disk and in the
// database for partial versions, leftovers, lost commits and stuck locks.
package faults
