// Package hostile is the end-to-end suite of hostile input (issue 6): forged, expired, revoked
// and misdirected tokens, path and id tricks, malformed bodies and headers, GraphQL bombs, the
// internal API and login brute force, each sent to a real control plane and data nodes and
// checked for its status and machine code, and then for having stored nothing.
package hostile
