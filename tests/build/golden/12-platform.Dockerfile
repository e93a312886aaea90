FROM --platform=linux/amd64 busybox AS base
FROM base
