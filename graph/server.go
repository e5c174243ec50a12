package graph

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"backuprepo/shared"
)

// Defaults used when HandlerConfig leaves a limit at zero. collections(first: 100) selecting
// every scalar field of Collection costs about 2,500, so the complexity default leaves room for
// one such page plus a few nested fields.
const (
	DefaultComplexityLimit = 5000
	DefaultMaxDepth        = 10
	DefaultMaxFields       = 2000
	// DefaultMaxBodyBytes bounds a GraphQL request body; queries are text, not uploads.
	DefaultMaxBodyBytes = 1 << 20
)

// listWeight is the complexity multiplier of list fields that take no `first` argument
// (versions, grants, tokens, data nodes and their collections): an estimate of their typical
// length, so that nesting them still adds up quickly.
const listWeight = 10

// queryCacheSize is the number of parsed and validated query documents kept; clients send a
// handful of distinct queries, so hits skip parsing and validation almost always.
const queryCacheSize = 1000

// HandlerConfig holds what the GraphQL handler needs. Every service must be set; limits left at
// zero get the defaults above.
type HandlerConfig struct {
	Sessions    Sessions
	Tenants     Tenants
	Users       Users
	Tokens      Tokens
	Collections Collections
	Versions    Versions
	Nodes       Nodes
	Audit       Audit

	Logger          *slog.Logger
	ComplexityLimit int
	MaxDepth        int
	// MaxFields caps the number of fields (aliases included, fragments expanded) of one
	// operation.
	MaxFields    int
	MaxBodyBytes int64
	// AllowIntrospection says whether the caller may query __schema and __type; nil refuses
	// everyone.
	AllowIntrospection func(ctx context.Context) bool
}

// NewHandler returns the GraphQL endpoint: POST for everything, GET for queries only.
func NewHandler(cfg HandlerConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	complexityLimit := orDefault(cfg.ComplexityLimit, DefaultComplexityLimit)
	maxBody := cfg.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}

	gcfg := Config{Resolvers: &Resolver{
		sessions:    cfg.Sessions,
		tenants:     cfg.Tenants,
		users:       cfg.Users,
		tokens:      cfg.Tokens,
		collections: cfg.Collections,
		versions:    cfg.Versions,
		nodes:       cfg.Nodes,
		audit:       cfg.Audit,
	}}
	setComplexity(&gcfg.Complexity)

	srv := handler.New(NewExecutableSchema(gcfg))
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	cache := lru.New[*ast.QueryDocument](queryCacheSize)
	srv.SetQueryCache(cache)
	srv.SetErrorPresenter(errorPresenter(cfg.Logger))
	srv.SetRecoverFunc(recoverFunc(cfg.Logger))
	// Order matters only for which refusal a client sees first; all run before any resolver.
	srv.Use(introspectionGate{allow: cfg.AllowIntrospection})
	srv.Use(queryLimits{maxDepth: orDefault(cfg.MaxDepth, DefaultMaxDepth), maxFields: orDefault(cfg.MaxFields, DefaultMaxFields), cache: cache})
	srv.Use(extension.FixedComplexityLimit(complexityLimit))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			writeRefusal(w, http.StatusRequestEntityTooLarge, shared.CodePayloadTooLarge, "request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		srv.ServeHTTP(w, r)
	})
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// setComplexity counts a paginated list as first × its items and an unpaginated one as
// listWeight × its items; every other field keeps gqlgen's default of 1 + its children.
func setComplexity(c *ComplexityRoot) {
	paged := func(child int, first *int) int {
		n := deref(first)
		if n < 1 {
			n = 1
		}
		return n * child
	}
	c.Query.Tenants = func(child int, first *int, _ *string) int { return paged(child, first) }
	c.Query.Users = func(child int, _ *string, first *int, _ *string) int { return paged(child, first) }
	c.Query.Collections = func(child int, _ *string, _ *string, _ []string, first *int, _ *string) int {
		return paged(child, first)
	}
	c.Query.AuditLog = func(child int, _ *string, first *int, _ *string) int { return paged(child, first) }
	c.Query.Tokens = func(child int, _ *string) int { return listWeight * child }
	c.Query.DataNodes = func(child int) int { return listWeight * child }
	c.Collection.Versions = func(child int) int { return listWeight * child }
	c.Collection.Grants = func(child int) int { return listWeight * child }
	c.DataNode.Collections = func(child int) int { return listWeight * child }
}

// errorPresenter is the one place where errors become GraphQL errors. Application errors keep
// their code and caller-safe message; errors about the request itself (parse, validation,
// limits) keep their message under a shared code; anything else is logged and shown as
// "internal error" so that SQL, paths or stack details never reach the caller.
func errorPresenter(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		if err == nil {
			return nil
		}
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		out := &gqlerror.Error{Path: gqlErr.Path, Locations: gqlErr.Locations}

		var appErr *shared.Error
		switch {
		case errors.As(err, &appErr):
			out.Message, out.Extensions = appErr.Message, codeExt(appErr.Code)
			if appErr.Code == shared.CodeInternal && appErr.Err != nil {
				log.ErrorContext(ctx, "graphql: internal error", "path", gqlErr.Path.String(), "err", appErr.Err)
			}
		case gqlErr.Err == nil && requestErrorCode(gqlErr) != "":
			out.Message, out.Extensions = requestErrorMessage(gqlErr), codeExt(requestErrorCode(gqlErr))
		default:
			log.ErrorContext(ctx, "graphql: internal error", "path", gqlErr.Path.String(), "err", err)
			out.Message, out.Extensions = "internal error", codeExt(shared.CodeInternal)
		}
		return out
	}
}

func codeExt(c shared.Code) map[string]any { return map[string]any{"code": string(c)} }

// requestErrorCode classifies the errors gqlgen and gqlparser raise about a request before
// any resolver runs; "" means the error is not one of them.
func requestErrorCode(e *gqlerror.Error) shared.Code {
	code, _ := e.Extensions["code"].(string)
	switch code {
	case errcode.ParseFailed, errcode.ValidationFailed:
		return shared.CodeInvalidInput
	case "COMPLEXITY_LIMIT_EXCEEDED":
		return shared.CodeQueryTooComplex
	case "":
		// The transports report unreadable or undecodable bodies without a code.
		if strings.HasPrefix(e.Message, msgBadJSON) || strings.HasPrefix(e.Message, msgBadBody) {
			return shared.CodeInvalidInput
		}
	}
	return ""
}

const (
	msgBadJSON = "json request body could not be decoded"
	msgBadBody = "could not read request body"
)

// requestErrorMessage drops what gqlgen appends to body errors: the body itself, which may hold
// a password.
func requestErrorMessage(e *gqlerror.Error) string {
	switch {
	case strings.HasPrefix(e.Message, msgBadJSON):
		return "request body is not valid JSON"
	case strings.HasPrefix(e.Message, msgBadBody):
		return msgBadBody
	}
	return e.Message
}

// recoverFunc turns a panic in a resolver into INTERNAL; the panic value and stack go to the
// log only.
func recoverFunc(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "graphql: panic", "panic", p, "stack", string(debug.Stack()))
		return shared.Errorf(shared.CodeInternal, "internal error")
	}
}

// writeRefusal answers before gqlgen sees the request, in the GraphQL response shape.
func writeRefusal(w http.ResponseWriter, status int, code shared.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"errors":[{"message":"` + msg + `","extensions":{"code":"` + string(code) + `"}}],"data":null}`))
}
