package shared

import "time"

// Page is how list queries are paginated: First items after the opaque cursor After.
type Page struct {
	First int
	After string
}

// PageInfo tells a client where the next page starts.
type PageInfo struct {
	EndCursor   string
	HasNextPage bool
}

// TenantInput creates a tenant.
type TenantInput struct {
	Name  string
	Slug  string
	Quota int64
}

// TenantPatch changes a tenant; nil fields stay as they are.
type TenantPatch struct {
	Name      *string
	Quota     *int64
	Suspended *bool
}

// UserInput creates a user. TenantID empty means hosting-org staff (systemAdmin only).
type UserInput struct {
	Email      string
	Password   string
	TenantID   string
	Roles      []Role
	ExpiresAt  *time.Time
	AllowedIPs []string
}

// UserPatch changes a user; nil fields stay as they are.
type UserPatch struct {
	Email      *string
	Roles      []Role // nil = unchanged
	Active     *bool
	ExpiresAt  *time.Time
	AllowedIPs []string // nil = unchanged
}

// TokenRequest asks for a new token for the caller (or, for admins, for UserID).
type TokenRequest struct {
	UserID      string // empty = the caller
	Description string
	TTL         time.Duration
	Scope       []ScopeEntry
	Once        bool
}

// CollectionFilter selects collections.
type CollectionFilter struct {
	TenantID string // empty = the caller's tenant (all tenants for systemAdmin)
	Search   string
	Tags     []string
	Page
}

// CollectionInput creates a collection.
type CollectionInput struct {
	ID                   string // empty = a new UUID
	TenantID             string // empty = the caller's tenant
	Description          string
	Tags                 []string
	FilenameTemplate     string
	MaxBackupsCount      int
	MaxOneVersionSize    int64
	MaxCollectionSize    int64
	Strategy             Strategy
	MaxOlderCopies       int
	KeepOlderNotMoreThan time.Duration
	Windows              []Window
	RequireEncryption    bool
	HealthCode           string // stored hashed
	Zone                 string // placement preference
}

// CollectionPatch changes a collection; nil fields stay as they are.
type CollectionPatch struct {
	Description          *string
	Tags                 []string // nil = unchanged
	FilenameTemplate     *string
	MaxBackupsCount      *int
	MaxOneVersionSize    *int64
	MaxCollectionSize    *int64
	Strategy             *Strategy
	MaxOlderCopies       *int
	KeepOlderNotMoreThan *time.Duration
	Windows              []Window // nil = unchanged; empty = no windows
	RequireEncryption    *bool
	HealthCode           *string
}

// Placement says where a new collection went and why.
type Placement struct {
	Collection Collection
	NodeName   string
	Reason     string
}

// CollectionHealth is the result of a collection's health checks.
type CollectionHealth struct {
	Healthy          bool
	WindowCompliance bool
	NewestVersionAge *time.Duration
	SoftLimitOK      bool
	HardLimitOK      bool
	Messages         []string
}
