package bench

import (
	"errors"
	"io"
	"net"

	"backuprepo/shared/pacing"
)

// Relay joins every connection accepted on ln to a new connection to upstream and copies the
// bytes both ways until either side closes. Both copies are io.Copy between *net.TCPConn
// values, which on Linux splice socket to socket without passing the bytes through user
// space: no HTTP, no checks, nothing but the kernel's work of receiving and sending.
//
// It is the reference for download_frontdoor_cpu_per_gib. On loopback the sender also pays
// for the receiver's TCP processing, so any proxy spends a fixed amount of kernel CPU per GiB
// it forwards, and that amount differs from one machine to the next (0.17-0.2 CPU-s/GiB for
// the front door on one VM, 0.35-0.47 on another with the same code, before the front door
// stopped pacing on loopback: see package pacing). Run in its own process, dialing the way the
// front door does and measured like the control plane, the relay shows where that floor is in
// the same run. It returns when ln is closed.
func Relay(ln net.Listener, upstream string) error {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		go relayConn(c.(*net.TCPConn), upstream)
	}
}

func relayConn(client *net.TCPConn, upstream string) {
	defer client.Close()
	c, err := (&net.Dialer{Control: pacing.Control}).Dial("tcp", upstream)
	if err != nil {
		return
	}
	up := c.(*net.TCPConn)
	defer up.Close()
	go func() {
		_, _ = io.Copy(up, client) // requests; ends when the client closes
		_ = up.CloseWrite()
	}()
	_, _ = io.Copy(client, up) // answers, spliced
}
