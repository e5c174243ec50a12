package nodemeta

import (
	"bytes"
	"reflect"
	"testing"

	"backuprepo/shared"
)

// FuzzDecode checks that Decode never panics, never accepts more than MaxSize bytes, and that
// whatever it accepts is exactly what Encode produces for the result (one canonical form).
func FuzzDecode(f *testing.F) {
	for _, m := range []Meta{dataNode(), {Role: RoleControlPlane, Name: "cp", State: shared.NodeAlive}} {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("\x01{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if len(b) > MaxSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode of decoded %+v: %v", m, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("not canonical:\n in %q\nout %q", b, again)
		}
	})
}

// FuzzEncode builds metadata from arbitrary fields: Encode either refuses it or produces at
// most MaxSize bytes that Decode turns back into the same Meta (minus per-disk detail when it
// did not fit).
func FuzzEncode(f *testing.F) {
	f.Add("datanode", "dn-1", "http://h:1", "z", "alive", "v1", "/d", int64(10), int64(5), uint8(2))
	f.Add("controlplane", "cp", "", "", "draining", "", "/a/b", int64(1<<50), int64(0), uint8(30))
	f.Fuzz(func(t *testing.T, role, name, url, zone, state, version, path string, total, free int64, disks uint8) {
		m := Meta{Role: Role(role), Name: name, PublicURL: url, Zone: zone, State: shared.NodeState(state), Version: version}
		var ds []shared.Disk
		for i := range int(disks % 40) {
			ds = append(ds, shared.Disk{Path: path + string(rune('a'+i%26)), Total: total, Free: free})
		}
		m = m.WithDisks(ds)
		b, err := Encode(m)
		if err != nil {
			return
		}
		if len(b) > MaxSize {
			t.Fatalf("encoded %d bytes", len(b))
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", m, err)
		}
		want := m
		if len(got.Disks) == 0 {
			want.Disks = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	})
}
