module backuprepo/e2e

go 1.26.8

require backuprepo/shared v0.0.0

replace backuprepo/shared => ../shared
