FROM busybox
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m30s --retries=3 CMD wget -q -O- localhost || exit 1
HEALTHCHECK CMD ["true"]
HEALTHCHECK NONE
