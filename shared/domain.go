// Package shared holds the domain types, roles and error codes that the control plane, the data
// nodes and the GraphQL layer agree on. It depends on the standard library only.
package shared

import "time"

// Role names are kept from the Go generation of the original product.
type Role string

const (
	RoleSystemAdmin       Role = "systemAdmin"
	RoleTenantAdmin       Role = "tenantAdmin"
	RoleUserManager       Role = "userManager"
	RoleCollectionManager Role = "collectionManager"
	RoleBackupUploader    Role = "backupUploader"
	RoleBackupDownloader  Role = "backupDownloader"
	RoleUploadsAnytime    Role = "uploadsAnytime"
)

// AllRoles lists every role in a stable order.
var AllRoles = []Role{RoleSystemAdmin, RoleTenantAdmin, RoleUserManager, RoleCollectionManager,
	RoleBackupUploader, RoleBackupDownloader, RoleUploadsAnytime}

// CollectionRoles are the roles that can also be granted on a single collection.
var CollectionRoles = []Role{RoleCollectionManager, RoleBackupUploader, RoleBackupDownloader, RoleUploadsAnytime}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	for _, k := range AllRoles {
		if k == r {
			return true
		}
	}
	return false
}

// CollectionScoped reports whether r may be granted on a single collection.
func (r Role) CollectionScoped() bool {
	for _, k := range CollectionRoles {
		if k == r {
			return true
		}
	}
	return false
}

// Tenant is a nonprofit the hosting organisation keeps backups for.
type Tenant struct {
	ID        string
	Name      string
	Slug      string
	Quota     int64 // bytes; 0 = unlimited
	Suspended bool
	CreatedAt time.Time
}

// User is a person or machine that logs in. TenantID is empty for hosting-org staff.
type User struct {
	ID         string
	Email      string
	TenantID   string
	Roles      []Role
	Active     bool
	ExpiresAt  *time.Time
	AllowedIPs []string // CIDR list; empty = anywhere
	CreatedAt  time.Time
}

// HasRole reports whether the user holds role r globally.
func (u User) HasRole(r Role) bool {
	for _, k := range u.Roles {
		if k == r {
			return true
		}
	}
	return false
}

// ScopeEntry narrows a token to some roles on one collection.
type ScopeEntry struct {
	Collection string `json:"collection"`
	Roles      []Role `json:"roles"`
}

// TokenRecord is what the control plane remembers of every token it issued.
type TokenRecord struct {
	ID          string // the JWT's jti
	UserID      string
	TenantID    string
	Description string
	Scope       []ScopeEntry
	Once        bool
	CreatedAt   time.Time
	ExpiresAt   time.Time
	RevokedAt   *time.Time
	LastUsedIP  string
	LastUsedAt  *time.Time
}

// IssuedToken is a freshly signed token; the string is shown once and never stored.
type IssuedToken struct {
	Token  string
	Record TokenRecord
}

// Principal is the authenticated caller of a request.
type Principal struct {
	User           User
	TokenID        string
	TokenExpiresAt time.Time
	Scope          []ScopeEntry // nil = the user's full rights
	Once           bool
	IP             string
}

// Strategy decides what happens when a collection holds maxBackupsCount versions.
type Strategy string

const (
	StrategyFIFO           Strategy = "FIFO"
	StrategyFIFOPlusOlder  Strategy = "FIFO_PLUS_OLDER"
	StrategyRejectWhenFull Strategy = "REJECT_WHEN_FULL"
)

// Valid reports whether s is a known strategy.
func (s Strategy) Valid() bool {
	return s == StrategyFIFO || s == StrategyFIFOPlusOlder || s == StrategyRejectWhenFull
}

// Window is a backup window: it opens at every fire of the 5-field cron expression From and
// stays open for Duration.
type Window struct {
	From     string        `json:"from"`
	Duration time.Duration `json:"duration"`
}

// Collection is a named series of backup versions owned by one tenant.
type Collection struct {
	ID                   string
	TenantID             string
	Description          string
	Tags                 []string
	FilenameTemplate     string
	MaxBackupsCount      int
	MaxOneVersionSize    int64
	MaxCollectionSize    int64 // 0 = unlimited
	Strategy             Strategy
	MaxOlderCopies       int
	KeepOlderNotMoreThan time.Duration
	Windows              []Window
	RequireEncryption    bool
	HasHealthCode        bool
	NodeName             string
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

// DefaultFilenameTemplate is used when a collection does not set one.
const DefaultFilenameTemplate = "backup-${version}"

// Usage is how much of a collection is taken.
type Usage struct {
	Versions      int
	Bytes         int64
	ReservedBytes int64
}

// Grant gives a user roles on one collection.
type Grant struct {
	CollectionID string
	UserID       string
	Roles        []Role
}

// Version is one stored backup.
type Version struct {
	ID           string    `json:"id"`
	CollectionID string    `json:"collectionId"`
	Number       int64     `json:"number"`
	Filename     string    `json:"filename"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	CreatedAt    time.Time `json:"createdAt"`
	UploadedBy   string    `json:"uploadedBy,omitempty"`
	TokenID      string    `json:"-"`
	NodeName     string    `json:"-"`
}

// NodeState is a data node's state as the cluster sees it.
type NodeState string

const (
	NodeAlive    NodeState = "alive"
	NodeSuspect  NodeState = "suspect"
	NodeDead     NodeState = "dead"
	NodeDraining NodeState = "draining"
	NodeLeft     NodeState = "left"
)

// Disk is one storage directory of a data node.
type Disk struct {
	Path  string `json:"path"`
	Total int64  `json:"total"`
	Free  int64  `json:"free"`
}

// DataNode is a process that stores bytes.
type DataNode struct {
	Name            string
	PublicURL       string
	Zone            string
	Disks           []Disk
	State           NodeState
	LastSeen        time.Time
	SoftwareVersion string
}

// TotalBytes sums the size of every disk.
func (n DataNode) TotalBytes() int64 {
	var t int64
	for _, d := range n.Disks {
		t += d.Total
	}
	return t
}

// FreeBytes sums the free space of every disk.
func (n DataNode) FreeBytes() int64 {
	var f int64
	for _, d := range n.Disks {
		f += d.Free
	}
	return f
}

// AuditEvent records who did what to which object, when and from where.
type AuditEvent struct {
	ID         int64
	At         time.Time
	ActorID    string
	TenantID   string
	Action     string
	ObjectType string
	ObjectID   string
	IP         string
	Details    map[string]string
}

// Report holds the numbers of the InfluxDB metrics line.
type Report struct {
	StorageDeclaredSpace int64
	StorageUsedSpace     int64
	UsersActiveAccounts  int64
	UsersActiveJWTKeys   int64
	BackupVersions       int64
	BackupCollections    int64
	ResourcesTags        int64
}
