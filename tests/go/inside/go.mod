module lpmx.test/inside

go 1.19
