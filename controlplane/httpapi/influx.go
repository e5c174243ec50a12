package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"backuprepo/shared"
)

// tagEscaper escapes a tag value per the InfluxDB line protocol.
var tagEscaper = strings.NewReplacer(`,`, `\,`, ` `, `\ `, `=`, `\=`)

// influxLine renders the report as the seed's line. Fields are plain integers without the
// line protocol's "i" suffix, exactly as the seed shows them.
func influxLine(baseURL, appEnv string, r shared.Report, at time.Time) string {
	var b strings.Builder
	b.WriteString("backup_repository_report,base_url=")
	b.WriteString(tagEscaper.Replace(baseURL))
	b.WriteString(",app_env=")
	b.WriteString(tagEscaper.Replace(appEnv))
	for i, f := range []struct {
		name  string
		value int64
	}{
		{"storage_declared_space", r.StorageDeclaredSpace},
		{"storage_used_space", r.StorageUsedSpace},
		{"users_active_accounts", r.UsersActiveAccounts},
		{"users_active_jwt_keys", r.UsersActiveJWTKeys},
		{"backup_versions", r.BackupVersions},
		{"backup_collections", r.BackupCollections},
		{"resources_tags", r.ResourcesTags},
	} {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(f.name)
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(f.value, 10))
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(at.UnixNano(), 10))
	b.WriteByte('\n')
	return b.String()
}

// influx answers GET /metrics/backup_repository_report/influxdb?code= (SPEC §4.3).
func (s *server) influx(w http.ResponseWriter, r *http.Request) {
	if !codeMatches(r.URL.Query().Get("code"), s.cfg.MetricsCode) {
		refuse(w, shared.CodeForbidden, "missing or wrong metrics code")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
	defer cancel()
	rep, err := s.cfg.DB.Report(ctx)
	if err != nil {
		s.cfg.Logger.Error("build the influxdb report", "err", err)
		refuse(w, shared.CodeDependencyUnavailable,
			"the report is unavailable: the database did not answer")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(influxLine(s.cfg.BaseURL, s.cfg.AppEnv, rep, s.now()))) // client gone: nothing to do
}
