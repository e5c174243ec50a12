package graph

import (
	"context"
	"fmt"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"

	"backuprepo/shared"
)

// queryLimits refuses operations nested deeper than maxDepth or selecting more than maxFields
// fields (aliases count, fragments are expanded) with QUERY_TOO_COMPLEX. It runs on the
// validated document, before complexity is computed and before any resolver.
//
// Introspection fields are skipped: their depth is bounded by gqlparser's
// MaxIntrospectionDepth rule, and the standard introspection query a console sends is deeper
// than any sensible limit for data.
//
// The field cap is also checked on the raw text before gqlgen parses and validates it, because
// gqlparser's OverlappingFieldsCanBeMerged rule is quadratic in the number of fields sharing a
// response name: four thousand copies of one field take seconds of CPU to validate. Documents
// already in the query cache passed that check and skip it.
type queryLimits struct {
	maxDepth  int
	maxFields int
	cache     graphql.Cache[*ast.QueryDocument]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationContextMutator
} = queryLimits{}

func (queryLimits) ExtensionName() string                   { return "QueryLimits" }
func (queryLimits) Validate(graphql.ExecutableSchema) error { return nil }

func (q queryLimits) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	if _, ok := q.cache.Get(ctx, params.Query); ok {
		return nil
	}
	doc, err := parser.ParseQuery(&ast.Source{Input: params.Query})
	if err != nil {
		// gqlgen parses again and reports the syntax error with its usual code.
		return nil
	}
	n := 0
	for _, op := range doc.Operations {
		n += textFields(op.SelectionSet)
	}
	for _, f := range doc.Fragments {
		n += textFields(f.SelectionSet)
	}
	if n > q.maxFields {
		return tooComplex("operation selects more than %d fields", q.maxFields)
	}
	return nil
}

// textFields counts the fields written in a selection set, not expanding fragment spreads.
func textFields(set ast.SelectionSet) int {
	n := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			n += 1 + textFields(s.SelectionSet)
		case *ast.InlineFragment:
			n += textFields(s.SelectionSet)
		}
	}
	return n
}

func (q queryLimits) MutateOperationContext(_ context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	m := measurer{cap: q.maxFields + 1, frags: map[string]measure{}}
	got := m.selectionSet(opCtx.Operation.SelectionSet)
	if got.depth > q.maxDepth {
		return tooComplex("operation is nested %d levels deep, which exceeds the limit of %d", got.depth, q.maxDepth)
	}
	if got.fields > q.maxFields {
		return tooComplex("operation selects more than %d fields", q.maxFields)
	}
	return nil
}

func tooComplex(format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: fmt.Sprintf(format, args...),
		Err: shared.Errorf(shared.CodeQueryTooComplex, format, args...)}
}

type measure struct{ depth, fields int }

// measurer walks a selection set once per fragment: fragment results are memoised, so a
// document that reuses fragments to multiply its size (a "fragment bomb") costs no more to
// measure than its text, and counts saturate at cap instead of overflowing.
type measurer struct {
	cap   int
	frags map[string]measure
}

func (m *measurer) selectionSet(set ast.SelectionSet) measure {
	var out measure
	for _, sel := range set {
		var got measure
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__schema" || s.Name == "__type" {
				continue
			}
			child := m.selectionSet(s.SelectionSet)
			got = measure{depth: child.depth + 1, fields: m.add(child.fields, 1)}
		case *ast.InlineFragment:
			got = m.selectionSet(s.SelectionSet)
		case *ast.FragmentSpread:
			got = m.fragment(s)
		}
		out.depth = max(out.depth, got.depth)
		out.fields = m.add(out.fields, got.fields)
	}
	return out
}

func (m *measurer) fragment(s *ast.FragmentSpread) measure {
	if got, ok := m.frags[s.Name]; ok {
		return got
	}
	if s.Definition == nil {
		// Validation resolves every spread; an unresolved one has nothing to count.
		return measure{}
	}
	// Validation has rejected fragment cycles, so this recursion ends.
	got := m.selectionSet(s.Definition.SelectionSet)
	m.frags[s.Name] = got
	return got
}

func (m *measurer) add(a, b int) int {
	return min(a+b, m.cap)
}

// introspectionGate lets only callers that AllowIntrospection approves query __schema and
// __type, and refuses the others with FORBIDDEN instead of gqlgen's uncoded error.
type introspectionGate struct {
	allow func(ctx context.Context) bool
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = introspectionGate{}

func (introspectionGate) ExtensionName() string                   { return "IntrospectionGate" }
func (introspectionGate) Validate(graphql.ExecutableSchema) error { return nil }

func (g introspectionGate) MutateOperationContext(ctx context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	allowed := g.allow != nil && g.allow(ctx)
	opCtx.DisableIntrospection = !allowed
	if !allowed && introspects(opCtx.Operation.SelectionSet, map[string]bool{}) {
		const msg = "introspection is not allowed for this caller"
		return &gqlerror.Error{Message: msg, Err: shared.Errorf(shared.CodeForbidden, msg)}
	}
	return nil
}

// introspects reports whether a root selection set asks for __schema or __type, which are
// only valid at the root (directly or through fragments).
func introspects(set ast.SelectionSet, seen map[string]bool) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__schema" || s.Name == "__type" {
				return true
			}
		case *ast.InlineFragment:
			if introspects(s.SelectionSet, seen) {
				return true
			}
		case *ast.FragmentSpread:
			if s.Definition != nil && !seen[s.Name] {
				seen[s.Name] = true
				if introspects(s.Definition.SelectionSet, seen) {
					return true
				}
			}
		}
	}
	return false
}
