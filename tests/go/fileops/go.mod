module lpmx.test/fileops

go 1.19
