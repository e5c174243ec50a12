package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"backuprepo/backupctl/progress"
	"backuprepo/shared/size"
)

// The GraphQL shapes backupctl reads; JSON names follow the schema so --json output matches
// what the API documents.
type (
	versionRow struct {
		ID           string    `json:"id"`
		CollectionID string    `json:"collectionId"`
		Number       int64     `json:"number"`
		Filename     string    `json:"filename"`
		Size         int64     `json:"size"`
		SHA256       string    `json:"sha256"`
		CreatedAt    time.Time `json:"createdAt"`
		UploadedBy   string    `json:"uploadedBy"`
		NodeName     string    `json:"nodeName"`
	}
	windowRow struct {
		From     string `json:"from"`
		Duration string `json:"duration"`
	}
	collectionRow struct {
		ID                string      `json:"id"`
		TenantID          string      `json:"tenantId"`
		Description       string      `json:"description"`
		Tags              []string    `json:"tags"`
		MaxBackupsCount   int         `json:"maxBackupsCount"`
		MaxOneVersionSize int64       `json:"maxOneVersionSize"`
		MaxCollectionSize int64       `json:"maxCollectionSize"`
		Strategy          string      `json:"strategy"`
		Windows           []windowRow `json:"windows"`
		RequireEncryption bool        `json:"requireEncryption"`
		NodeName          string      `json:"nodeName"`
		Usage             struct {
			Versions      int   `json:"versions"`
			Bytes         int64 `json:"bytes"`
			ReservedBytes int64 `json:"reservedBytes"`
		} `json:"usage"`
		CreatedAt time.Time `json:"createdAt"`
	}
	tenantRow struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		Slug      string    `json:"slug"`
		Quota     int64     `json:"quota"`
		Suspended bool      `json:"suspended"`
		CreatedAt time.Time `json:"createdAt"`
	}
	userRow struct {
		ID        string     `json:"id"`
		Email     string     `json:"email"`
		TenantID  string     `json:"tenantId"`
		Roles     []string   `json:"roles"`
		Active    bool       `json:"active"`
		ExpiresAt *time.Time `json:"expiresAt"`
		CreatedAt time.Time  `json:"createdAt"`
	}
	nodeRow struct {
		Name            string `json:"name"`
		PublicURL       string `json:"publicUrl"`
		Zone            string `json:"zone"`
		State           string `json:"state"`
		SoftwareVersion string `json:"softwareVersion"`
		Capacity        struct {
			Total int64 `json:"total"`
			Free  int64 `json:"free"`
		} `json:"capacity"`
		Disks []struct {
			Path  string `json:"path"`
			Total int64  `json:"total"`
			Free  int64  `json:"free"`
		} `json:"disks"`
		LastSeen    time.Time `json:"lastSeen"`
		Collections []struct {
			ID string `json:"id"`
		} `json:"collections"`
	}
	scopeRow struct {
		Collection string   `json:"collection"`
		Roles      []string `json:"roles"`
	}
	tokenRow struct {
		ID          string     `json:"id"`
		UserID      string     `json:"userId"`
		TenantID    string     `json:"tenantId"`
		Description string     `json:"description"`
		Scope       []scopeRow `json:"scope"`
		Once        bool       `json:"once"`
		CreatedAt   time.Time  `json:"createdAt"`
		ExpiresAt   time.Time  `json:"expiresAt"`
		RevokedAt   *time.Time `json:"revokedAt"`
		LastUsedIP  string     `json:"lastUsedIP"`
	}
)

const (
	versionFields    = `id collectionId number filename size sha256 createdAt uploadedBy nodeName`
	collectionFields = `id tenantId description tags maxBackupsCount maxOneVersionSize maxCollectionSize strategy
		windows { from duration } requireEncryption nodeName usage { versions bytes reservedBytes } createdAt`
	tenantFields = `id name slug quota suspended createdAt`
	userFields   = `id email tenantId roles active expiresAt createdAt`
	nodeFields   = `name publicUrl zone state softwareVersion capacity { total free } disks { path total free } lastSeen collections { id }`
	tokenFields  = `id userId tenantId description scope { collection roles } once createdAt expiresAt revokedAt lastUsedIP`
)

func (a *app) table(write func(w io.Writer)) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	write(tw)
	return tw.Flush()
}

// list prints what a listing command found: a JSON array ([] when empty) with --json, else a
// table of header and one tab-separated line per row.
func list[T any](a *app, asJSON bool, rows []T, header string, line func(T) string) error {
	if asJSON {
		return a.printJSON(nonNil(rows))
	}
	return a.table(func(w io.Writer) {
		fmt.Fprintln(w, header)
		for _, r := range rows {
			fmt.Fprintln(w, line(r))
		}
	})
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func limit(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	return progress.Bytes(n)
}

// jsonFlag is the --json flag every listing command takes.
func jsonFlag(fs *flag.FlagSet) *bool { return fs.Bool("json", false, "print JSON instead of a table") }

// graphql runs one operation with the configured URL and token.
func (a *app) graphql(ctx context.Context, query string, vars map[string]any, out any) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	return c.GraphQL(ctx, query, vars, out)
}

// paged fetches every page of a connection field.
func paged[T any](ctx context.Context, a *app, field, args, fields string, vars map[string]any) ([]T, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf(`query($after: String%s) { page: %s(first: 100, after: $after%s) { items { %s } pageInfo { endCursor hasNextPage } } }`,
		argDecls(args), field, argUses(args), fields)
	var all []T
	after := ""
	for {
		v := map[string]any{"after": nil}
		for k, x := range vars {
			v[k] = x
		}
		if after != "" {
			v["after"] = after
		}
		var out struct {
			Page struct {
				Items    []T `json:"items"`
				PageInfo struct {
					EndCursor   string `json:"endCursor"`
					HasNextPage bool   `json:"hasNextPage"`
				} `json:"pageInfo"`
			} `json:"page"`
		}
		if err := c.GraphQL(ctx, q, v, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Page.Items...)
		if !out.Page.PageInfo.HasNextPage || out.Page.PageInfo.EndCursor == "" || out.Page.PageInfo.EndCursor == after {
			return all, nil
		}
		after = out.Page.PageInfo.EndCursor
	}
}

// argDecls turns "tenantId:ID,search:String" into variable declarations; argUses into uses.
func argDecls(args string) string {
	var b strings.Builder
	for a := range strings.SplitSeq(args, ",") {
		if name, typ, ok := strings.Cut(a, ":"); ok {
			fmt.Fprintf(&b, ", $%s: %s", name, typ)
		}
	}
	return b.String()
}

func argUses(args string) string {
	var b strings.Builder
	for a := range strings.SplitSeq(args, ",") {
		if name, _, ok := strings.Cut(a, ":"); ok {
			fmt.Fprintf(&b, ", %s: $%s", name, name)
		}
	}
	return b.String()
}

func optional(s string) any {
	if s == "" {
		return nil
	}
	return s
}

var whoamiCommand = command{
	summary: "show who the token belongs to",
	usage:   "whoami [--json]",
	about:   "Shows the user, tenant, roles and token the other commands act with.",
	example: "  backupctl whoami\n  BACKUPCTL_TOKEN=$TOKEN backupctl whoami --json",
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		asJSON := jsonFlag(fs)
		if _, err := parse(fs, args); err != nil {
			return err
		}
		var out struct {
			Me struct {
				User           userRow    `json:"user"`
				TokenID        string     `json:"tokenId"`
				TokenExpiresAt time.Time  `json:"tokenExpiresAt"`
				Scope          []scopeRow `json:"scope"`
				Once           bool       `json:"once"`
			} `json:"me"`
		}
		if err := a.graphql(ctx, `{ me { user { `+userFields+` } tokenId tokenExpiresAt scope { collection roles } once } }`, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return a.printJSON(out.Me)
		}
		m := out.Me
		return a.table(func(w io.Writer) {
			fmt.Fprintf(w, "User:\t%s (%s)\n", m.User.Email, m.User.ID)
			fmt.Fprintf(w, "Tenant:\t%s\n", dash(m.User.TenantID))
			fmt.Fprintf(w, "Roles:\t%s\n", dash(strings.Join(m.User.Roles, ", ")))
			fmt.Fprintf(w, "Token:\t%s, expires %s\n", m.TokenID, when(m.TokenExpiresAt))
			for _, s := range m.Scope {
				fmt.Fprintf(w, "Scope:\t%s: %s\n", s.Collection, strings.Join(s.Roles, ", "))
			}
		})
	},
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var versionsCommand = command{
	summary: "list a collection's versions, newest first",
	usage:   "versions --collection ID [--json]",
	about:   "Lists the stored versions of a collection with their size and sha256.",
	example: "  backupctl versions --collection web-backups\n  backupctl versions --collection web-backups --json | jq -r '.[0].sha256'",
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		coll := fs.String("collection", "", "the collection's id (required)")
		asJSON := jsonFlag(fs)
		if _, err := parse(fs, args); err != nil {
			return err
		}
		if *coll == "" {
			return usagef("--collection is required")
		}
		var out struct {
			Collection *struct {
				Versions []versionRow `json:"versions"`
			} `json:"collection"`
		}
		if err := a.graphql(ctx, `query($id: ID!) { collection(id: $id) { versions { `+versionFields+` } } }`, map[string]any{"id": *coll}, &out); err != nil {
			return err
		}
		if out.Collection == nil {
			return notFound("collection", *coll)
		}
		return list(a, *asJSON, out.Collection.Versions, "VERSION\tFILENAME\tSIZE\tCREATED\tSHA256\tID", func(v versionRow) string {
			return fmt.Sprintf("v%d\t%s\t%s\t%s\t%s\t%s", v.Number, v.Filename, progress.Bytes(v.Size), when(v.CreatedAt), v.SHA256[:min(12, len(v.SHA256))], v.ID)
		})
	},
}

var collectionsCommand = command{
	summary: "list collections",
	usage:   "collections [--tenant ID] [--search TEXT] [--json]",
	about:   "Lists the collections of your tenant (every tenant's for a system admin, or --tenant's).",
	example: "  backupctl collections\n  backupctl collections --tenant 7d3c… --search web --json",
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		tenant := fs.String("tenant", "", "only this tenant's collections")
		search := fs.String("search", "", "only collections whose id or description contains this")
		asJSON := jsonFlag(fs)
		if _, err := parse(fs, args); err != nil {
			return err
		}
		cs, err := paged[collectionRow](ctx, a, "collections", "tenantId:ID,search:String", collectionFields,
			map[string]any{"tenantId": optional(*tenant), "search": optional(*search)})
		if err != nil {
			return err
		}
		return list(a, *asJSON, cs, "ID\tVERSIONS\tUSED\tMAX\tSTRATEGY\tNODE\tDESCRIPTION", func(c collectionRow) string {
			return fmt.Sprintf("%s\t%d/%d\t%s\t%s\t%s\t%s\t%s", c.ID, c.Usage.Versions, c.MaxBackupsCount,
				progress.Bytes(c.Usage.Bytes), limit(c.MaxCollectionSize), c.Strategy, dash(c.NodeName), c.Description)
		})
	},
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func notFound(what, id string) error {
	return usageError{fmt.Sprintf("%s %q not found", what, id)}
}

var collectionCommand = command{
	summary: "create, update or delete a collection",
	usage:   "collection (create | update ID | delete ID) [flags]",
	about: `create places a new collection on a data node and says which and why; update changes only the
flags given; delete removes a collection without versions (--force, system admins only, deletes
its versions too). Sizes take units: 500MiB, 4GB. Windows are "CRON|DURATION", such as
"0 2 * * *|4h" (open daily from 02:00 for four hours).`,
	example: `  backupctl collection create --id web-backups --max-backups 7 --max-version-size 5GiB --max-collection-size 40GiB
  backupctl collection create --tenant $TENANT --max-backups 30 --max-version-size 1GiB --max-collection-size 35GiB \
      --window "0 1 * * *|6h" --require-encryption --description "nightly database dumps"
  backupctl collection update web-backups --max-backups 14 --max-collection-size 80GiB
  backupctl collection delete web-backups`,
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		id := fs.String("id", "", "create: a chosen id ([A-Za-z0-9-]{1,64}); default a new UUID")
		tenant := fs.String("tenant", "", "create: the tenant (default yours)")
		zone := fs.String("zone", "", "create: preferred zone for placement")
		desc := fs.String("description", "", "what the collection holds")
		tags := fs.String("tags", "", "comma-separated tags")
		template := fs.String("filename-template", "", "version file names (default backup-${version})")
		maxBackups := fs.Int("max-backups", 0, "versions kept")
		maxVersion := fs.String("max-version-size", "", "largest version")
		maxColl := fs.String("max-collection-size", "", "all versions together (0 = unlimited, system admins only)")
		strategy := fs.String("strategy", "", "FIFO, FIFO_PLUS_OLDER or REJECT_WHEN_FULL (default FIFO)")
		olderCopies := fs.Int("max-older-copies", 0, "FIFO_PLUS_OLDER: older copies kept")
		olderAge := fs.String("keep-older-than", "", "FIFO_PLUS_OLDER: keep older copies no older than this (30d)")
		var windows stringList
		fs.Var(&windows, "window", `backup window "CRON|DURATION" (repeatable)`)
		clearWindows := fs.Bool("no-windows", false, "update: remove every window")
		requireEnc := fs.Bool("require-encryption", false, "refuse uploads that are not OpenPGP messages")
		healthCode := fs.String("health-code", "", "code protecting the collection's health endpoint")
		force := fs.Bool("force", false, "delete: also delete the versions (system admins only)")
		asJSON := jsonFlag(fs)
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if len(pos) == 0 {
			return usagef("want create, update ID or delete ID")
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		in := map[string]any{}
		put := func(flagName, field string, v any) {
			if set[flagName] {
				in[field] = v
			}
		}
		sizes := map[string]*string{"max-version-size": maxVersion, "max-collection-size": maxColl}
		for name, s := range sizes {
			if set[name] {
				n, err := size.Parse(*s)
				if err != nil {
					return usagef("--%s: %v", name, err)
				}
				in[map[string]string{"max-version-size": "maxOneVersionSize", "max-collection-size": "maxCollectionSize"}[name]] = n
			}
		}
		put("description", "description", *desc)
		if set["tags"] {
			in["tags"] = splitList(*tags)
		}
		put("filename-template", "filenameTemplate", *template)
		put("max-backups", "maxBackupsCount", *maxBackups)
		put("strategy", "strategy", strings.ToUpper(*strategy))
		put("max-older-copies", "maxOlderCopies", *olderCopies)
		put("keep-older-than", "keepOlderNotMoreThan", *olderAge)
		put("require-encryption", "requireEncryption", *requireEnc)
		put("health-code", "healthCode", *healthCode)
		if len(windows) > 0 || *clearWindows {
			ws := []map[string]string{}
			for _, w := range windows {
				from, dur, ok := strings.Cut(w, "|")
				if !ok {
					return usagef(`--window %q: want "CRON|DURATION", such as "0 2 * * *|4h"`, w)
				}
				ws = append(ws, map[string]string{"from": strings.TrimSpace(from), "duration": strings.TrimSpace(dur)})
			}
			in["windows"] = ws
		}
		switch {
		case pos[0] == "create" && len(pos) == 1:
			for _, req := range []string{"max-backups", "max-version-size", "max-collection-size"} {
				if !set[req] {
					return usagef("collection create needs --max-backups, --max-version-size and --max-collection-size")
				}
			}
			put("id", "id", *id)
			put("tenant", "tenantId", *tenant)
			put("zone", "zone", *zone)
			var out struct {
				Create struct {
					Collection collectionRow `json:"collection"`
					NodeName   string        `json:"nodeName"`
					Reason     string        `json:"reason"`
				} `json:"createCollection"`
			}
			if err := a.graphql(ctx, `mutation($in: CreateCollectionInput!) { createCollection(input: $in) { collection { `+collectionFields+` } nodeName reason } }`,
				map[string]any{"in": in}, &out); err != nil {
				return err
			}
			if *asJSON {
				return a.printJSON(out.Create)
			}
			fmt.Fprintf(a.stdout, "Created collection %s on data node %s (%s).\n", out.Create.Collection.ID, out.Create.NodeName, out.Create.Reason)
			return nil
		case pos[0] == "update" && len(pos) == 2:
			if len(in) == 0 {
				return usagef("collection update: give at least one flag to change")
			}
			var out struct {
				Update collectionRow `json:"updateCollection"`
			}
			if err := a.graphql(ctx, `mutation($id: ID!, $in: UpdateCollectionInput!) { updateCollection(id: $id, input: $in) { `+collectionFields+` } }`,
				map[string]any{"id": pos[1], "in": in}, &out); err != nil {
				return err
			}
			if *asJSON {
				return a.printJSON(out.Update)
			}
			fmt.Fprintf(a.stdout, "Updated collection %s.\n", out.Update.ID)
			return nil
		case pos[0] == "delete" && len(pos) == 2:
			var out struct {
				Deleted bool `json:"deleteCollection"`
			}
			if err := a.graphql(ctx, `mutation($id: ID!, $force: Boolean) { deleteCollection(id: $id, force: $force) }`,
				map[string]any{"id": pos[1], "force": *force}, &out); err != nil {
				return err
			}
			if *asJSON {
				return a.printJSON(map[string]any{"id": pos[1], "deleted": out.Deleted})
			}
			fmt.Fprintf(a.stdout, "Deleted collection %s.\n", pos[1])
			return nil
		}
		return usagef("want create, update ID or delete ID")
	},
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func splitList(s string) []string {
	out := []string{}
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var tokenCommand = command{
	summary: "issue, list or revoke API tokens",
	usage:   "token (issue | list | revoke ID) [flags]",
	about: `issue prints a new token once on standard output (details go to standard error, so
TOKEN=$(backupctl token issue …) works); --collection with --role narrows it to roles on one
collection, --once makes an upload-only token that is revoked after its first upload. list shows a
user's tokens; revoke takes effect everywhere at once.`,
	example: `  backupctl token issue --collection web-backups --role backupUploader --ttl 720h --description "web server cron"
  backupctl token issue --user $USER_ID --collection db --role backupUploader --role backupDownloader --ttl 30d
  backupctl token issue --collection web-backups --role backupUploader --once --ttl 24h
  backupctl token list --user $USER_ID
  backupctl token revoke 3f8e…`,
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		user := fs.String("user", "", "issue/list: for this user (admins; default yourself)")
		coll := fs.String("collection", "", "issue: narrow the token to this collection")
		var roles stringList
		fs.Var(&roles, "role", "issue: a role on --collection (repeatable or comma-separated)")
		ttl := fs.String("ttl", "", "issue: lifetime, such as 720h or 30d (default: the server's)")
		once := fs.Bool("once", false, "issue: upload-only, revoked after its first successful upload")
		desc := fs.String("description", "", "issue: what the token is for")
		asJSON := jsonFlag(fs)
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if len(pos) == 0 {
			return usagef("want issue, list or revoke ID")
		}
		switch {
		case pos[0] == "issue" && len(pos) == 1:
			vars := map[string]any{"user": optional(*user), "desc": *desc, "ttl": optional(*ttl), "once": *once, "scope": nil}
			var rs []string
			for _, r := range roles {
				rs = append(rs, splitList(r)...)
			}
			if (*coll == "") != (len(rs) == 0) {
				return usagef("--collection and --role go together")
			}
			if *coll != "" {
				vars["scope"] = []map[string]any{{"collection": *coll, "roles": rs}}
			}
			var out struct {
				Issued struct {
					Token  string   `json:"token"`
					Record tokenRow `json:"record"`
				} `json:"issueToken"`
			}
			if err := a.graphql(ctx, `mutation($user: ID, $desc: String!, $ttl: Duration, $scope: [ScopeEntryInput!], $once: Boolean) {
				issueToken(userId: $user, description: $desc, ttl: $ttl, scope: $scope, once: $once) { token record { `+tokenFields+` } } }`, vars, &out); err != nil {
				return err
			}
			if *asJSON {
				return a.printJSON(out.Issued)
			}
			fmt.Fprintln(a.stdout, out.Issued.Token)
			fmt.Fprintf(a.stderr, "Token %s issued, expires %s%s; it is shown only this once.\n", out.Issued.Record.ID, when(out.Issued.Record.ExpiresAt), scopeText(out.Issued.Record))
			return nil
		case pos[0] == "list" && len(pos) == 1:
			var out struct {
				Tokens []tokenRow `json:"tokens"`
			}
			if err := a.graphql(ctx, `query($user: ID) { tokens(userId: $user) { `+tokenFields+` } }`, map[string]any{"user": optional(*user)}, &out); err != nil {
				return err
			}
			return list(a, *asJSON, out.Tokens, "ID\tDESCRIPTION\tSCOPE\tEXPIRES\tREVOKED\tLAST IP", func(t tokenRow) string {
				revoked := "-"
				if t.RevokedAt != nil {
					revoked = when(*t.RevokedAt)
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", t.ID, dash(t.Description), dash(strings.TrimPrefix(scopeText(t), "; ")), when(t.ExpiresAt), revoked, dash(t.LastUsedIP))
			})
		case pos[0] == "revoke" && len(pos) == 2:
			var out struct {
				Revoked tokenRow `json:"revokeToken"`
			}
			if err := a.graphql(ctx, `mutation($id: ID!) { revokeToken(id: $id) { `+tokenFields+` } }`, map[string]any{"id": pos[1]}, &out); err != nil {
				return err
			}
			if *asJSON {
				return a.printJSON(out.Revoked)
			}
			fmt.Fprintf(a.stdout, "Revoked token %s.\n", out.Revoked.ID)
			return nil
		}
		return usagef("want issue, list or revoke ID")
	},
}

func scopeText(t tokenRow) string {
	var parts []string
	for _, s := range t.Scope {
		parts = append(parts, s.Collection+": "+strings.Join(s.Roles, ","))
	}
	if t.Once {
		parts = append(parts, "once")
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

var tenantsCommand = command{
	summary: "list tenants (system admins)",
	usage:   "tenants [--json]",
	about:   "Lists the nonprofits the repository keeps backups for, with their quotas.",
	example: "  backupctl tenants\n  backupctl tenants --json | jq -r '.[] | select(.slug == \"foodbank\") | .id'",
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		asJSON := jsonFlag(fs)
		if _, err := parse(fs, args); err != nil {
			return err
		}
		ts, err := paged[tenantRow](ctx, a, "tenants", "", tenantFields, nil)
		if err != nil {
			return err
		}
		return list(a, *asJSON, ts, "SLUG\tNAME\tQUOTA\tSUSPENDED\tCREATED\tID", func(t tenantRow) string {
			return fmt.Sprintf("%s\t%s\t%s\t%t\t%s\t%s", t.Slug, t.Name, limit(t.Quota), t.Suspended, when(t.CreatedAt), t.ID)
		})
	},
}

var usersCommand = command{
	summary: "list users",
	usage:   "users [--tenant ID] [--json]",
	about:   "Lists the users of your tenant (or of --tenant, for system admins).",
	example: "  backupctl users\n  backupctl users --tenant 7d3c… --json",
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		tenant := fs.String("tenant", "", "this tenant's users")
		asJSON := jsonFlag(fs)
		if _, err := parse(fs, args); err != nil {
			return err
		}
		us, err := paged[userRow](ctx, a, "users", "tenantId:ID", userFields, map[string]any{"tenantId": optional(*tenant)})
		if err != nil {
			return err
		}
		return list(a, *asJSON, us, "EMAIL\tROLES\tACTIVE\tEXPIRES\tTENANT\tID", func(u userRow) string {
			exp := "-"
			if u.ExpiresAt != nil {
				exp = when(*u.ExpiresAt)
			}
			return fmt.Sprintf("%s\t%s\t%t\t%s\t%s\t%s", u.Email, dash(strings.Join(u.Roles, ",")), u.Active, exp, dash(u.TenantID), u.ID)
		})
	},
}

var nodesCommand = command{
	summary: "show data nodes with their capacity and state",
	usage:   "nodes [--json]",
	about:   "Shows every data node: state, zone, how full its disks are, and how many collections it holds.",
	example: "  backupctl nodes\n  backupctl nodes --json | jq -r '.[] | select(.state != \"alive\") | .name'",
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		asJSON := jsonFlag(fs)
		if _, err := parse(fs, args); err != nil {
			return err
		}
		var out struct {
			Nodes []nodeRow `json:"dataNodes"`
		}
		if err := a.graphql(ctx, `{ dataNodes { `+nodeFields+` } }`, nil, &out); err != nil {
			return err
		}
		return list(a, *asJSON, out.Nodes, "NAME\tSTATE\tZONE\tUSED\tFREE\tTOTAL\tCOLLECTIONS\tLAST SEEN\tURL", func(n nodeRow) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s", n.Name, n.State, dash(n.Zone),
				capacityBar(n.Capacity.Total-n.Capacity.Free, n.Capacity.Total), progress.Bytes(n.Capacity.Free),
				progress.Bytes(n.Capacity.Total), len(n.Collections), when(n.LastSeen), n.PublicURL)
		})
	},
}

// capacityBar draws how full a node is: [######....]  62%.
func capacityBar(used, total int64) string {
	const width = 10
	if total <= 0 {
		return "[" + strings.Repeat("?", width) + "]    ?"
	}
	frac := min(max(float64(used)/float64(total), 0), 1)
	full := int(frac*width + 0.5)
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", full), strings.Repeat(".", width-full), frac*100)
}
