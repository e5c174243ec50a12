package auth

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	cases := []struct {
		h    string
		tok  string
		isOK bool
	}{
		{"", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer   abc ", "abc", true},
		{"BEARER\tabc", "abc", true},
		{"Bearer", "", true},
		{"Bearerabc", "", false},
		{"Node secret", "", false},
	}
	for _, c := range cases {
		tok, ok := bearerToken(c.h)
		if tok != c.tok || ok != c.isOK {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", c.h, tok, ok, c.tok, c.isOK)
		}
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusting := &Service{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	plain := &Service{}
	cases := []struct {
		s      *Service
		remote string
		xff    []string
		want   string
	}{
		{plain, "203.0.113.7:5555", nil, "203.0.113.7"},
		{plain, "203.0.113.7:5555", []string{"1.2.3.4"}, "203.0.113.7"}, // untrusted peer: header ignored
		{plain, "[::ffff:203.0.113.7]:80", nil, "203.0.113.7"},
		{plain, "[fe80::1%eth0]:80", nil, "fe80::1"},
		{trusting, "10.0.0.2:80", []string{"198.51.100.9"}, "198.51.100.9"},
		// The leftmost entry is whatever the client claimed; only the hop the proxy added counts.
		{trusting, "10.0.0.2:80", []string{"6.6.6.6, 198.51.100.9"}, "198.51.100.9"},
		{trusting, "10.0.0.2:80", []string{"6.6.6.6", "198.51.100.9, 10.0.0.3"}, "198.51.100.9"},
		{trusting, "10.0.0.2:80", nil, "10.0.0.2"},
		{trusting, "10.0.0.2:80", []string{"garbage"}, "10.0.0.2"},
		{trusting, "[::1]:80", []string{"2001:db8::5"}, "2001:db8::5"},
		{trusting, "203.0.113.7:80", []string{"1.2.3.4"}, "203.0.113.7"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := c.s.clientIP(r); got != c.want {
			t.Errorf("clientIP(remote %s, xff %q) = %q, want %q", c.remote, c.xff, got, c.want)
		}
	}
}

func TestIPAllowed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		allowed []string
		ip      string
		want    bool
	}{
		{nil, "1.2.3.4", true},
		{nil, "", true},
		{[]string{"10.0.0.0/8"}, "10.200.0.1", true},
		{[]string{"10.0.0.0/8"}, "11.0.0.1", false},
		{[]string{"10.0.0.0/8"}, "::ffff:10.0.0.1", true},
		{[]string{"10.0.0.0/8"}, "", false},
		{[]string{"10.0.0.0/8"}, "not-an-ip", false},
		{[]string{"192.168.1.1/32", "2001:db8::/32"}, "2001:db8::77", true},
		{[]string{"192.168.1.1/32"}, "192.168.1.2", false},
		{[]string{"192.168.1.1"}, "192.168.1.1", true},
	}
	for _, c := range cases {
		if got := IPAllowed(c.allowed, c.ip); got != c.want {
			t.Errorf("IPAllowed(%q, %q) = %v, want %v", c.allowed, c.ip, got, c.want)
		}
	}
}
