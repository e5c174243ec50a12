module backuprepo/backupctl

go 1.26.8

require (
	backuprepo/shared v0.0.0
	github.com/ProtonMail/go-crypto v1.5.2
	github.com/jackc/pgx/v5 v5.12.0
	golang.org/x/term v0.48.0
)

require (
	github.com/cloudflare/circl v1.6.3 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	golang.org/x/crypto v0.41.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)

replace backuprepo/shared => ../shared
