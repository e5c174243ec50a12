module backuprepo/shared

go 1.26.8
