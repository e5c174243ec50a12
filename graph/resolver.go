package graph

import "backuprepo/shared"

// Resolver holds the services the resolvers call; it has no logic of its own. The fields are
// unexported so that they never collide with resolver methods of the same name.
type Resolver struct {
	sessions    Sessions
	tenants     Tenants
	users       Users
	tokens      Tokens
	collections Collections
	versions    Versions
	nodes       Nodes
	audit       Audit
}

// deref reads an optional GraphQL argument; absent and null both mean the zero value, which
// the services read as "the default" (the caller's tenant, the caller, no force...).
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func page(first *int, after *string) shared.Page {
	return shared.Page{First: deref(first), After: deref(after)}
}

// orNil turns a service's value into the pointer a nullable GraphQL field wants.
func orNil[T any](v T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func session(t shared.IssuedToken) Session {
	return Session{Token: t.Token, SessionID: t.Record.ID, Expire: t.Record.ExpiresAt}
}
