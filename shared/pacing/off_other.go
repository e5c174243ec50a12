//go:build !linux

package pacing

import "syscall"

// off does nothing where the congestion control cannot be chosen per socket.
func off(syscall.RawConn) error { return nil }
