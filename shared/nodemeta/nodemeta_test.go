package nodemeta

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"backuprepo/shared"
)

func dataNode() Meta {
	return Meta{Role: RoleDataNode, Name: "dn-1", PublicURL: "http://10.0.0.5:8081", Zone: "eu-1",
		State: shared.NodeAlive, Version: "v1.2.3"}.WithDisks([]shared.Disk{
		{Path: "/srv/disk1", Total: 1 << 40, Free: 1 << 39},
		{Path: "/srv/disk2", Total: 2 << 40, Free: 1 << 30},
	})
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	manyDisks := dataNode()
	var disks []shared.Disk
	for i := range 20 {
		disks = append(disks, shared.Disk{Path: fmt.Sprintf("/srv/backup-storage/disk-%02d", i), Total: 4 << 40, Free: int64(i) << 30})
	}
	manyDisks = manyDisks.WithDisks(disks)
	totalsOnly := manyDisks
	totalsOnly.Disks = nil

	cases := []struct {
		name string
		in   Meta
		want Meta
	}{
		{"data node with disks", dataNode(), dataNode()},
		{"control plane without URL", Meta{Role: RoleControlPlane, Name: "cp-1", State: shared.NodeAlive}, Meta{Role: RoleControlPlane, Name: "cp-1", State: shared.NodeAlive}},
		{"draining node, https URL with path", Meta{Role: RoleDataNode, Name: "dn_2.x", PublicURL: "https://dn2.example.org/store", State: shared.NodeDraining}, Meta{Role: RoleDataNode, Name: "dn_2.x", PublicURL: "https://dn2.example.org/store", State: shared.NodeDraining}},
		{"totals without disks", Meta{Role: RoleDataNode, Name: "dn-3", PublicURL: "http://h", State: shared.NodeAlive, Total: 100, Free: 40}, Meta{Role: RoleDataNode, Name: "dn-3", PublicURL: "http://h", State: shared.NodeAlive, Total: 100, Free: 40}},
		{"too many disks keep totals only", manyDisks, totalsOnly},
		{"leaving", Meta{Role: RoleDataNode, Name: "dn-4", PublicURL: "http://h", State: shared.NodeLeft}, Meta{Role: RoleDataNode, Name: "dn-4", PublicURL: "http://h", State: shared.NodeLeft}},
		{"unicode and quotes in disk path", dataNode().WithDisks([]shared.Disk{{Path: `/mnt/sauvegarde "é"`, Total: 10, Free: 1}}), dataNode().WithDisks([]shared.Disk{{Path: `/mnt/sauvegarde "é"`, Total: 10, Free: 1}})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := Encode(tc.in)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if len(b) > MaxSize {
				t.Fatalf("encoded %d bytes, above %d", len(b), MaxSize)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 64)
	cases := []struct {
		name string
		edit func(*Meta)
	}{
		{"empty name", func(m *Meta) { m.Name = "" }},
		{"name with space", func(m *Meta) { m.Name = "dn 1" }},
		{"name too long", func(m *Meta) { m.Name = long + "a" }},
		{"unknown role", func(m *Meta) { m.Role = "router" }},
		{"announced dead", func(m *Meta) { m.State = shared.NodeDead }},
		{"announced suspect", func(m *Meta) { m.State = shared.NodeSuspect }},
		{"empty state", func(m *Meta) { m.State = "" }},
		{"data node without URL", func(m *Meta) { m.PublicURL = "" }},
		{"ftp URL", func(m *Meta) { m.PublicURL = "ftp://h/x" }},
		{"URL without host", func(m *Meta) { m.PublicURL = "http:///x" }},
		{"URL with query", func(m *Meta) { m.PublicURL = "http://h/?a=b" }},
		{"URL with credentials", func(m *Meta) { m.PublicURL = "http://u:p@h/" }},
		{"relative URL", func(m *Meta) { m.PublicURL = "/x" }},
		{"free above total", func(m *Meta) { m.Disks = nil; m.Total, m.Free = 1, 2 }},
		{"negative total", func(m *Meta) { m.Disks = nil; m.Total, m.Free = -1, 0 }},
		{"totals disagree with disks", func(m *Meta) { m.Total++ }},
		{"disk free above total", func(m *Meta) { *m = m.WithDisks([]shared.Disk{{Path: "/d", Total: 1, Free: 2}}) }},
		{"disk without path", func(m *Meta) { *m = m.WithDisks([]shared.Disk{{Total: 1, Free: 1}}) }},
		{"control character in path", func(m *Meta) { *m = m.WithDisks([]shared.Disk{{Path: "/d\n", Total: 1, Free: 1}}) }},
		{"version with newline", func(m *Meta) { m.Version = "1\n" }},
		{"zone with slash", func(m *Meta) { m.Zone = "eu/1" }},
		{"too long even without disks", func(m *Meta) {
			m.Name, m.Zone, m.Version = long, long, long
			m.PublicURL = "https://" + strings.Repeat("h", 190) + ".org"
			m.Role = RoleControlPlane
			m.State = shared.NodeDraining
			*m = m.WithDisks([]shared.Disk{{Path: "/d", Total: 1 << 62, Free: 1 << 62}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := dataNode()
			tc.edit(&m)
			if b, err := Encode(m); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode(%+v) = %q, %v; want ErrInvalid", m, b, err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	good, err := Encode(dataNode())
	if err != nil {
		t.Fatal(err)
	}
	body := string(good[1:])
	v1 := func(s string) []byte { return append([]byte{formatV1}, s...) }
	cases := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{2}, good[1:]...)},
		{"plain JSON without version", good[1:]},
		{"garbage", []byte("\x01not json")},
		{"trailing data", append(append([]byte{}, good...), ' ', '{', '}')},
		{"trailing newline", append(append([]byte{}, good...), '\n')},
		{"unknown field", v1(strings.Replace(body, `{"r"`, `{"x":1,"r"`, 1))},
		{"extra spaces", v1(strings.Replace(body, `"r":`, `"r": `, 1))},
		{"escaped letter", v1(strings.Replace(body, `"n":"dn-1"`, `"n":"dn-\u0031"`, 1))},
		{"duplicate key", v1(strings.Replace(body, `{"r":"datanode"`, `{"r":"datanode","r":"datanode"`, 1))},
		{"bad role", v1(strings.Replace(body, `"datanode"`, `"router"`, 1))},
		{"bad state", v1(strings.Replace(body, `"alive"`, `"dead"`, 1))},
		{"empty name", v1(strings.Replace(body, `"n":"dn-1"`, `"n":""`, 1))},
		{"file URL", v1(strings.Replace(body, `http://10.0.0.5:8081`, `file:///etc`, 1))},
		{"oversize", v1(`{"r":"datanode","n":"` + strings.Repeat("a", 600) + `"}`)},
		{"float size", v1(strings.Replace(body, `"t":3298534883328`, `"t":3.298534883328e12`, 1))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if m, err := Decode(tc.in); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode(%q) = %+v, %v; want ErrInvalid", tc.in, m, err)
			}
		})
	}
}

func TestLogWriter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	w := NewLogWriter(l)
	if _, err := w.Write([]byte("[WARN] memberlist: Refuting a suspect message (from: dn-1)\n[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("[ERR] memberlist: Failed to send ping\nno level here\n")); err != nil {
		t.Fatal(err)
	}
	want := `level=WARN msg="Refuting a suspect message (from: dn-1)" component=memberlist
level=DEBUG msg="Stream connection from=127.0.0.1:1" component=memberlist
level=ERROR msg="Failed to send ping" component=memberlist
level=INFO msg="no level here" component=memberlist
`
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}
