package admin

import (
	"context"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
)

const maxSearchLength = 200

// visibleCollection loads a collection of a tenant the caller can see; NOT_FOUND otherwise,
// including ids that cannot exist.
func (s *Service) visibleCollection(ctx context.Context, p shared.Principal, id string) (shared.Collection, error) {
	if !CollectionIDPattern.MatchString(id) {
		return shared.Collection{}, shared.Errorf(shared.CodeNotFound, "collection not found")
	}
	c, err := s.db.CollectionByID(ctx, id)
	if err != nil {
		return shared.Collection{}, err
	}
	if !Visible(p, c.TenantID) {
		return shared.Collection{}, shared.Errorf(shared.CodeNotFound, "collection not found")
	}
	return c, nil
}

// collectionFor loads a visible collection and checks that the caller may do a on it.
func (s *Service) collectionFor(ctx context.Context, p shared.Principal, id string, a Action) (shared.Collection, []shared.Role, error) {
	c, err := s.visibleCollection(ctx, p, id)
	if err != nil {
		return shared.Collection{}, nil, err
	}
	grants, err := s.callerGrants(ctx, p, c.ID)
	if err != nil {
		return shared.Collection{}, nil, err
	}
	if !Can(p, a, c.TenantID, c.ID, grants) {
		return shared.Collection{}, nil, forbidden()
	}
	return c, grants, nil
}

// Collections lists the collections the caller may read, ordered by id, one query per page.
func (s *Service) Collections(ctx context.Context, f shared.CollectionFilter) ([]shared.Collection, shared.PageInfo, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	limit, err := pageSize(f.First)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	after, err := decodeCursor(f.After)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	if err := text("search", f.Search, maxSearchLength); err != nil {
		return nil, shared.PageInfo{}, err
	}
	tags, err := cleanTags(f.Tags)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	q := postgres.CollectionQuery{TenantID: f.TenantID, Search: f.Search, Tags: tags, After: after, Limit: limit + 1}
	if !isSystemAdmin(p.User) {
		if q.TenantID == "" {
			q.TenantID = p.User.TenantID
		}
		if !Visible(p, q.TenantID) {
			return nil, shared.PageInfo{}, shared.Errorf(shared.CodeNotFound, "tenant not found")
		}
		// Without a tenant-wide role a user reads only the collections granted to it.
		if len(userRoles(p.User, q.TenantID, nil)) == 0 {
			q.GrantedTo = p.User.ID
		}
	}
	if p.Scope != nil {
		q.IDs = make([]string, 0, len(p.Scope))
		for _, e := range p.Scope {
			q.IDs = append(q.IDs, e.Collection)
		}
	}
	list, err := s.db.ListCollections(ctx, q)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	list, info := pageOf(list, limit, func(c shared.Collection) string { return c.ID })
	if p.Scope != nil {
		// A scope may name a collection the user cannot read (its grant was revoked since).
		kept := list[:0]
		for _, c := range list {
			grants, err := s.callerGrants(ctx, p, c.ID)
			if err != nil {
				return nil, shared.PageInfo{}, err
			}
			if Can(p, ReadCollection, c.TenantID, c.ID, grants) {
				kept = append(kept, c)
			}
		}
		list = kept
	}
	return list, info, nil
}

// Collection returns one collection the caller may read.
func (s *Service) Collection(ctx context.Context, id string) (shared.Collection, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Collection{}, err
	}
	c, _, err := s.collectionFor(ctx, p, id, ReadCollection)
	return c, err
}

// CreateCollection validates a new collection, places it on a data node, and stores it with
// an audit record of the placement decision, all within the tenant's quota.
func (s *Service) CreateCollection(ctx context.Context, in shared.CollectionInput) (shared.Placement, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Placement{}, err
	}
	tenantID := in.TenantID
	if tenantID == "" {
		tenantID = p.User.TenantID
	}
	if tenantID == "" {
		return shared.Placement{}, invalid("tenantId is required")
	}
	if !Visible(p, tenantID) {
		return shared.Placement{}, shared.Errorf(shared.CodeNotFound, "tenant not found")
	}
	id := in.ID
	if id == "" {
		id = uuid.NewString()
	}
	if !CollectionIDPattern.MatchString(id) {
		return shared.Placement{}, invalid("collection id must be a UUID or match %s", CollectionIDPattern)
	}
	if !Can(p, CreateCollection, tenantID, id, nil) {
		return shared.Placement{}, forbidden()
	}
	c := shared.Collection{
		ID: id, TenantID: tenantID, Description: in.Description, FilenameTemplate: in.FilenameTemplate,
		MaxBackupsCount: in.MaxBackupsCount, MaxOneVersionSize: in.MaxOneVersionSize,
		MaxCollectionSize: in.MaxCollectionSize, Strategy: in.Strategy, MaxOlderCopies: in.MaxOlderCopies,
		KeepOlderNotMoreThan: in.KeepOlderNotMoreThan, Windows: in.Windows, RequireEncryption: in.RequireEncryption,
	}
	if c.FilenameTemplate == "" {
		c.FilenameTemplate = shared.DefaultFilenameTemplate
	}
	if c.Strategy == "" {
		c.Strategy = shared.StrategyFIFO
	}
	if c.Windows == nil {
		c.Windows = []shared.Window{}
	}
	if c.Tags, err = cleanTags(in.Tags); err != nil {
		return shared.Placement{}, err
	}
	if err := ValidateCollection(c, isSystemAdmin(p.User)); err != nil {
		return shared.Placement{}, err
	}
	if err := validateHealthCode(in.HealthCode); err != nil {
		return shared.Placement{}, err
	}
	if err := text("zone", in.Zone, 100); err != nil {
		return shared.Placement{}, err
	}
	// Fail on the quota before asking the cluster for room; it is checked again under the
	// tenant's row lock when the row is written.
	if t, err := s.db.TenantByID(ctx, tenantID); err != nil {
		return shared.Placement{}, err
	} else if t.Quota > 0 && c.MaxCollectionSize == 0 {
		return shared.Placement{}, checkTenantQuota(t, postgres.TenantLoad{}, 0)
	}
	decision, err := s.place(ctx, c.MaxCollectionSize, in.Zone)
	if err != nil {
		return shared.Placement{}, err
	}
	c.NodeName = decision.NodeName
	ev := event(ctx, p, "createCollection", "collection", id, tenantID, map[string]string{
		"node": decision.NodeName, "placementReason": decision.Reason, "zone": in.Zone,
		"maxCollectionSize": itoa(c.MaxCollectionSize)})
	created, err := s.db.CreateCollection(ctx, c, HashHealthCode(in.HealthCode), func(t shared.Tenant, load postgres.TenantLoad) error {
		return checkTenantQuota(t, load, c.MaxCollectionSize)
	}, ev)
	if err != nil {
		return shared.Placement{}, err
	}
	return shared.Placement{Collection: created, NodeName: decision.NodeName, Reason: decision.Reason}, nil
}

// patchCollection applies p to c and lists the changed fields for the audit record.
func patchCollection(c shared.Collection, p shared.CollectionPatch) (shared.Collection, []string, error) {
	var changed []string
	if p.Description != nil {
		c.Description, changed = *p.Description, append(changed, "description")
	}
	if p.Tags != nil {
		tags, err := cleanTags(p.Tags)
		if err != nil {
			return c, nil, err
		}
		c.Tags, changed = tags, append(changed, "tags")
	}
	if p.FilenameTemplate != nil {
		c.FilenameTemplate, changed = *p.FilenameTemplate, append(changed, "filenameTemplate")
	}
	if p.MaxBackupsCount != nil {
		c.MaxBackupsCount, changed = *p.MaxBackupsCount, append(changed, "maxBackupsCount")
	}
	if p.MaxOneVersionSize != nil {
		c.MaxOneVersionSize, changed = *p.MaxOneVersionSize, append(changed, "maxOneVersionSize")
	}
	if p.MaxCollectionSize != nil {
		c.MaxCollectionSize, changed = *p.MaxCollectionSize, append(changed, "maxCollectionSize")
	}
	if p.Strategy != nil {
		c.Strategy, changed = *p.Strategy, append(changed, "strategy")
	}
	if p.MaxOlderCopies != nil {
		c.MaxOlderCopies, changed = *p.MaxOlderCopies, append(changed, "maxOlderCopies")
	}
	if p.KeepOlderNotMoreThan != nil {
		c.KeepOlderNotMoreThan, changed = *p.KeepOlderNotMoreThan, append(changed, "keepOlderNotMoreThan")
	}
	if p.Windows != nil {
		c.Windows, changed = p.Windows, append(changed, "windows")
	}
	if p.RequireEncryption != nil {
		c.RequireEncryption, changed = *p.RequireEncryption, append(changed, "requireEncryption")
	}
	if p.HealthCode != nil {
		if err := validateHealthCode(*p.HealthCode); err != nil {
			return c, nil, err
		}
		changed = append(changed, "healthCode")
	}
	return c, changed, nil
}

// UpdateCollection changes a collection under the same rules as creation; the current content
// must also fit the new limits (see checkUsageFits) and the tenant quota must still hold.
func (s *Service) UpdateCollection(ctx context.Context, id string, patch shared.CollectionPatch) (shared.Collection, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Collection{}, err
	}
	c, _, err := s.collectionFor(ctx, p, id, ManageCollection)
	if err != nil {
		return shared.Collection{}, err
	}
	// Validate against the state read now to fail fast; apply repeats it on the locked row.
	_, changed, err := patchCollection(c, patch)
	if err != nil {
		return shared.Collection{}, err
	}
	var hash *string
	if patch.HealthCode != nil {
		h := HashHealthCode(*patch.HealthCode)
		hash = &h
	}
	details := map[string]string{"changed": strings.Join(changed, ",")}
	if patch.MaxCollectionSize != nil {
		details["maxCollectionSize"] = itoa(*patch.MaxCollectionSize)
	}
	ev := event(ctx, p, "updateCollection", "collection", c.ID, c.TenantID, details)
	return s.db.UpdateCollection(ctx, c.ID, func(cur shared.Collection, usage shared.Usage, t shared.Tenant, load postgres.TenantLoad) (shared.Collection, error) {
		next, _, err := patchCollection(cur, patch)
		if err != nil {
			return shared.Collection{}, err
		}
		// An unlimited collection made by a systemAdmin stays editable by its managers as long
		// as they leave the limit alone.
		unlimitedKept := cur.MaxCollectionSize == 0 && next.MaxCollectionSize == 0
		if err := ValidateCollection(next, isSystemAdmin(p.User) || unlimitedKept); err != nil {
			return shared.Collection{}, err
		}
		if err := checkUsageFits(next, usage); err != nil {
			return shared.Collection{}, err
		}
		if next.MaxCollectionSize != cur.MaxCollectionSize {
			if err := checkTenantQuota(t, load, next.MaxCollectionSize); err != nil {
				return shared.Collection{}, err
			}
		}
		return next, nil
	}, hash, ev)
}

// DeleteCollection deletes an empty collection; force (systemAdmin only) deletes its versions
// too. The files of force-deleted versions stay on the data node until it removes them: the
// audit record says so.
func (s *Service) DeleteCollection(ctx context.Context, id string, force bool) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	c, _, err := s.collectionFor(ctx, p, id, ManageCollection)
	if err != nil {
		return err
	}
	if force && (!isSystemAdmin(p.User) || p.Scope != nil) {
		return shared.Errorf(shared.CodeForbidden, "only a systemAdmin may force the deletion of a collection with versions")
	}
	ev := event(ctx, p, "deleteCollection", "collection", c.ID, c.TenantID, map[string]string{
		"force": strconv.FormatBool(force), "node": c.NodeName})
	_, err = s.db.DeleteCollection(ctx, c.ID, force, ev)
	return err
}

// Versions lists a collection's versions, newest first.
func (s *Service) Versions(ctx context.Context, collectionID string) ([]shared.Version, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	c, _, err := s.collectionFor(ctx, p, collectionID, ReadCollection)
	if err != nil {
		return nil, err
	}
	return s.db.ListVersions(ctx, c.ID)
}

// Usage says how much of a collection is taken, reservations of uploads in flight included.
func (s *Service) Usage(ctx context.Context, collectionID string) (shared.Usage, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Usage{}, err
	}
	c, _, err := s.collectionFor(ctx, p, collectionID, ReadCollection)
	if err != nil {
		return shared.Usage{}, err
	}
	return s.db.CollectionUsage(ctx, c.ID)
}

// Grants lists who holds which roles on a collection; for those who may change them.
func (s *Service) Grants(ctx context.Context, collectionID string) ([]shared.Grant, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.visibleCollection(ctx, p, collectionID)
	if err != nil {
		return nil, err
	}
	mine, err := s.callerGrants(ctx, p, c.ID)
	if err != nil {
		return nil, err
	}
	if !Can(p, ManageUsers, c.TenantID, "", nil) && !Can(p, ManageCollection, c.TenantID, c.ID, mine) {
		return nil, forbidden()
	}
	return s.db.CollectionGrants(ctx, c.ID)
}

// Health checks a collection's backups against its windows and limits.
func (s *Service) Health(ctx context.Context, collectionID string) (shared.CollectionHealth, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.CollectionHealth{}, err
	}
	c, _, err := s.collectionFor(ctx, p, collectionID, ReadCollection)
	if err != nil {
		return shared.CollectionHealth{}, err
	}
	versions, err := s.db.ListVersions(ctx, c.ID)
	if err != nil {
		return shared.CollectionHealth{}, err
	}
	return ComputeHealth(c, versions, s.now()), nil
}
