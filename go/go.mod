module shmx.local

go 1.19
