package pacing

import "syscall"

// off sets the socket's congestion control to loopbackAlgorithm.
func off(c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, loopbackAlgorithm)
	}); cerr != nil {
		return cerr
	}
	return err
}
