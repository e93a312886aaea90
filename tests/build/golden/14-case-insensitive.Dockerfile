from busybox as Builder
run echo hi
Cmd echo hello
